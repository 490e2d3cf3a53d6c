"""KServe v2 typed tensors: validation, flattening, and batch concatenation / splitting.

Shared by the client side (validate before sending, coalesce single-instance requests)
and the server side (answer like OVMS).  Plain data only; no HTTP here.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

#: The tensor data types of the Open Inference Protocol v2.
V2_DATATYPES = frozenset({
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
})

_INT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


class TensorError(ValueError):
    """A tensor that the server would refuse (wrong shape, count or datatype)."""


def flatten(data: Any) -> list[Any]:
    """Row-major flattening of a (nested) JSON array; a scalar becomes one element."""
    if not isinstance(data, (list, tuple)):
        return [data]
    out: list[Any] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, tuple)):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 1


def _check_shape(shape: Any, where: str) -> list[int]:
    if not isinstance(shape, (list, tuple)):
        raise TensorError(f"{where}: 'shape' must be a list of non-negative integers")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise TensorError(f"{where}: 'shape' must be a list of non-negative integers, "
                              f"got {list(shape)!r}")
    return list(shape)


def _check_values(values: list[Any], datatype: str, where: str) -> None:
    if datatype == "BOOL":
        ok = all(isinstance(v, bool) for v in values)
    elif datatype in _INT_TYPES:
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if ok and datatype.startswith("U"):
            ok = all(v >= 0 for v in values)
    elif datatype in _FLOAT_TYPES:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    else:  # BYTES: strings (or base64 text) per element
        ok = all(isinstance(v, str) for v in values)
    if not ok:
        raise TensorError(f"{where}: data does not match datatype {datatype}")


def validate_tensor(tensor: Any, where: str, *, need_data: bool = True) -> None:
    """Check one request input: name, datatype, shape, and that the element count of
    ``data`` equals the product of ``shape``."""
    if not isinstance(tensor, Mapping):
        raise TensorError(f"{where}: a tensor must be an object with name, shape, datatype, data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"{where}: 'name' must be a non-empty string")
    datatype = tensor.get("datatype")
    if datatype not in V2_DATATYPES:
        raise TensorError(f"{where} ({name}): datatype {datatype!r} is not a v2 tensor type; "
                          f"use one of {', '.join(sorted(V2_DATATYPES))}")
    shape = _check_shape(tensor.get("shape"), f"{where} ({name})")
    if "data" not in tensor:
        if need_data:
            raise TensorError(f"{where} ({name}): 'data' is missing")
        return
    values = flatten(tensor["data"])
    expected = element_count(shape)
    if len(values) != expected:
        raise TensorError(f"{where} ({name}): data has {len(values)} elements but shape "
                          f"{shape} needs {expected}")
    _check_values(values, datatype, f"{where} ({name})")


def validate_inputs(inputs: Any) -> None:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TensorError("'inputs' must be a non-empty list of tensors")
    seen: set[str] = set()
    for i, tensor in enumerate(inputs):
        validate_tensor(tensor, f"inputs[{i}]")
        if tensor["name"] in seen:
            raise TensorError(f"inputs[{i}]: duplicate input name {tensor['name']!r}")
        seen.add(tensor["name"])


def concat_rows(tensors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Concatenate same-named single-row tensors (shape ``[1, ...]``) along dimension 0."""
    first = tensors[0]
    data: list[Any] = []
    for t in tensors:
        data.extend(flatten(t["data"]))
    out: dict[str, Any] = {"name": first["name"], "shape": [len(tensors), *first["shape"][1:]],
                           "datatype": first["datatype"], "data": data}
    if first.get("parameters"):
        out["parameters"] = dict(first["parameters"])
    return out


def split_rows(tensor: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a batched output tensor back into ``n`` single-row tensors.

    Raises :class:`TensorError` if the batch dimension or the element count does not match
    ``n`` exactly: a mismatch must never assign rows to the wrong request.
    """
    name = tensor.get("name")
    shape = tensor.get("shape")
    if not isinstance(shape, (list, tuple)) or not shape:
        raise TensorError(f"output {name!r} has no batch dimension (shape {shape!r})")
    if shape[0] != n:
        raise TensorError(f"output {name!r} has batch dimension {shape[0]}, expected {n}")
    if "data" not in tensor:
        raise TensorError(f"output {name!r} carries no JSON data (binary outputs cannot be split)")
    values = flatten(tensor["data"])
    per_row = element_count(shape[1:])
    if len(values) != n * per_row:
        raise TensorError(f"output {name!r} has {len(values)} elements, expected {n * per_row}")
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"name": name, "shape": [1, *shape[1:]],
                               "datatype": tensor.get("datatype"),
                               "data": values[i * per_row:(i + 1) * per_row]}
        if tensor.get("parameters"):
            row["parameters"] = dict(tensor["parameters"])
        rows.append(row)
    return rows
