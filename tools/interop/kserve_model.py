"""A tiny model of ours served by KServe's ``ModelServer`` (the ``kserve`` package): it
doubles an FP32 tensor.  Speaks KServe v2 (``/v2/models/doubler/infer``) and v1
(``/v1/models/doubler:predict`` with ``instances``).

    python tools/interop/kserve_model.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class Doubler(Model):
    def __init__(self, name: str = "doubler") -> None:
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: Any, headers: Any = None,
                      response_headers: Any = None) -> Any:
        if isinstance(payload, InferRequest):  # v2: typed tensors
            outputs = []
            for tensor in payload.inputs:
                data = [2 * float(x) for x in tensor.data]
                outputs.append(InferOutput(name=f"{tensor.name}_x2", shape=list(tensor.shape),
                                           datatype="FP32", data=data))
            return InferResponse(response_id=payload.id or "", model_name=self.name,
                                 infer_outputs=outputs)
        rows = payload["instances"]  # v1: rows of numbers
        return {"predictions": [[2 * float(x) for x in row] for row in rows]}


if __name__ == "__main__":
    port = int(sys.argv[1])
    ModelServer(http_port=port, grpc_port=port + 1, enable_grpc=False, workers=1).start([Doubler()])
