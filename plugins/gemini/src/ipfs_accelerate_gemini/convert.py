"""Turn a payload into a Gemini ``GenerateContentRequest`` body.

A payload is either native (``contents``, ``systemInstruction``, ``generationConfig``,
``tools``, ``toolConfig``, ``safetySettings``... passed through untouched) or OpenAI-style
(``messages`` with roles, ``max_tokens``, ``temperature``, ``stop``, function ``tools``),
converted: system messages become ``systemInstruction``, ``assistant`` becomes ``model``,
consecutive turns of one role are merged (Gemini wants them alternating).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

#: Payload keys that are ours (the URL, the pipeline) and never go into the body.
ROUTING_KEYS = frozenset({"model", "stream", "alt"})

#: OpenAI-style sampling parameters -> GenerationConfig fields.
GENERATION_PARAMS = {
    "max_tokens": "maxOutputTokens", "max_completion_tokens": "maxOutputTokens",
    "temperature": "temperature", "top_p": "topP", "top_k": "topK", "stop": "stopSequences",
    "n": "candidateCount", "seed": "seed", "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_CONSUMED = ROUTING_KEYS | {"messages", "prompt", "system"} | set(GENERATION_PARAMS)


class ConversionError(ValueError):
    """The payload cannot be expressed as a Gemini request."""


def generate_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in payload.items() if k not in _CONSUMED}
    if "messages" in payload:
        if "contents" in payload:
            raise ConversionError("pass either 'contents' (native) or 'messages' (OpenAI-style), not both")
        contents, system = messages_to_contents(payload["messages"])
        body["contents"] = contents
        if system:
            body.setdefault("systemInstruction", {"parts": [{"text": t} for t in system]})
    elif "prompt" in payload and "contents" not in payload:
        body["contents"] = [{"role": "user", "parts": [{"text": str(payload["prompt"])}]}]
    if isinstance(payload.get("system"), str) and payload["system"]:
        body.setdefault("systemInstruction", {"parts": [{"text": payload["system"]}]})
    config = dict(body.get("generationConfig") or {})
    for src, dst in GENERATION_PARAMS.items():
        if payload.get(src) is not None:
            value = payload[src]
            config.setdefault(dst, [value] if dst == "stopSequences" and isinstance(value, str) else value)
    if config:
        body["generationConfig"] = config
    if isinstance(body.get("tools"), list):
        body["tools"] = tools_to_native(body["tools"])
    if not body.get("contents"):
        raise ConversionError("payload needs 'contents' (native), 'messages' or 'prompt'")
    return body


def messages_to_contents(messages: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """(contents, system texts) from OpenAI-style messages."""
    if not isinstance(messages, list) or not messages:
        raise ConversionError("'messages' must be a non-empty list")
    contents: list[dict[str, Any]] = []
    system: list[str] = []
    tool_names: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, Mapping):
            raise ConversionError("every message must be an object with a 'role'")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(p["text"] for p in _parts(m.get("content")) if "text" in p)
            continue
        if role in ("assistant", "model"):
            g_role, parts = "model", _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                tool_names[str(call.get("id"))] = fn.get("name", "")
                parts.append({"functionCall": {"name": fn.get("name", ""),
                                               "args": _json_args(fn.get("arguments"))}})
        elif role == "tool":
            name = m.get("name") or tool_names.get(str(m.get("tool_call_id")), "")
            content = m.get("content")
            g_role, parts = "user", [{"functionResponse": {"name": name, "response": {
                "content": content if not isinstance(content, list)
                else "".join(p.get("text", "") for p in _parts(content))}}}]
        elif role == "user":
            g_role, parts = "user", _parts(m.get("content"))
        else:
            raise ConversionError(f"unknown message role {role!r}")
        if not parts:
            continue
        if contents and contents[-1]["role"] == g_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": g_role, "parts": parts})
    return contents, system


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise ConversionError("message content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, str):
            parts.append({"text": p})
        elif isinstance(p, Mapping) and p.get("type") == "text":
            parts.append({"text": str(p.get("text", ""))})
        elif isinstance(p, Mapping) and p.get("type") == "image_url":
            url = (p.get("image_url") or {}).get("url", "")
            if not url.startswith("data:") or ";base64," not in url:
                raise ConversionError("only data: URLs (base64) can be sent as images to Gemini")
            mime, data = url[5:].split(";base64,", 1)
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        elif isinstance(p, Mapping) and "type" not in p:
            parts.append(dict(p))  # already a native Gemini part
        else:
            raise ConversionError(f"unsupported content part {p!r:.60}")
    return parts


def _json_args(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments or "{}")
        except ValueError:
            raise ConversionError("tool call arguments are not valid JSON") from None
    return arguments or {}


def tools_to_native(tools: list[Any]) -> list[Any]:
    """OpenAI function tools -> one ``functionDeclarations`` tool; native tools pass through."""
    native: list[Any] = []
    declarations: list[dict[str, Any]] = []
    for t in tools:
        if isinstance(t, Mapping) and t.get("type") == "function" and "function" in t:
            fn = t["function"]
            decl = {"name": fn["name"]}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters"):
                decl["parameters"] = fn["parameters"]
            declarations.append(decl)
        else:
            native.append(t)
    if declarations:
        native.append({"functionDeclarations": declarations})
    return native


def embed_request(model: str, item: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """One ``EmbedContentRequest`` (as used inside batchEmbedContents, with ``model``)."""
    if isinstance(item, str):
        content: Any = {"parts": [{"text": item}]}
    elif isinstance(item, Mapping) and "parts" in item:
        content = dict(item)
    elif isinstance(item, Mapping) and "content" in item:  # already an EmbedContentRequest
        req = dict(item)
        req.setdefault("model", model)
        return req
    else:
        raise ConversionError("embed input must be text, a Content {'parts': [...]} or a request")
    req: dict[str, Any] = {"model": model, "content": content}
    for src, dst in (("taskType", "taskType"), ("task_type", "taskType"), ("title", "title"),
                     ("outputDimensionality", "outputDimensionality"),
                     ("dimensions", "outputDimensionality")):
        if payload.get(src) is not None:
            req.setdefault(dst, payload[src])
    return req
