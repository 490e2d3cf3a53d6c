"""The eleven backend classes of the original system, by their original names."""

from __future__ import annotations

from typing import Any, Mapping

from .base import CompatBackend


class openai_api(CompatBackend):  # noqa: N801 - the original's name
    """OpenAI.  Metadata ``openai_api_key`` (env ``OPENAI_API_KEY``), ``openai_organization``;
    ``api_key``/``organization`` may also be passed as keyword arguments."""

    backend_name = "openai"

    def __init__(self, resources: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None, api_key: str | None = None,
                 organization: str | None = None, metrics_enabled: bool = True,
                 distributed_mode: bool = False, **kwargs: Any) -> None:
        metadata = dict(metadata or {})
        if api_key:
            metadata["openai_api_key"] = api_key
        if organization:
            metadata["openai_organization"] = organization
        self.metrics_enabled = metrics_enabled
        self.distributed_mode = distributed_mode
        super().__init__(resources, metadata, **kwargs)


class claude(CompatBackend):  # noqa: N801
    """Anthropic.  Metadata ``claude_api_key`` | ``anthropic_api_key`` | ``api_key`` (env
    ``ANTHROPIC_API_KEY``, ``CLAUDE_API_KEY``)."""

    backend_name = "claude"
    _max_retry_delay_default = 60.0


class groq(CompatBackend):  # noqa: N801
    """Groq.  Metadata ``groq_api_key`` (env ``GROQ_API_KEY``)."""

    backend_name = "groq"
    _max_retry_delay_default = 60.0


class gemini(CompatBackend):  # noqa: N801
    """Gemini.  Metadata ``gemini_api_key`` | ``google_api_key`` (env ``GEMINI_API_KEY``,
    ``GOOGLE_API_KEY``)."""

    backend_name = "gemini"


class hf_tgi(CompatBackend):  # noqa: N801
    """Hugging Face TGI.  Metadata ``hf_api_key`` | ``hf_api_token`` (env ``HF_API_KEY``,
    ``HF_API_TOKEN``)."""

    backend_name = "hf_tgi"


class hf_tei(CompatBackend):  # noqa: N801
    """Hugging Face TEI.  Metadata ``hf_api_key`` | ``hf_api_token``."""

    backend_name = "hf_tei"


class ollama(CompatBackend):  # noqa: N801
    """Ollama.  Metadata ``ollama_api_url`` (env ``OLLAMA_API_URL``)."""

    backend_name = "ollama"


class llvm(CompatBackend):  # noqa: N801
    """The original's LLVM inference server.  Metadata ``llvm_api_key``, ``llvm_api_url``,
    ``llvm_max_retries``, ``llvm_max_concurrent``, ``llvm_failure_threshold``,
    ``llvm_reset_timeout``."""

    backend_name = "llvm"
    _prefix = "llvm_"


class ovms(CompatBackend):  # noqa: N801
    """OpenVINO Model Server.  Metadata ``ovms_api_url``, ``ovms_model``, ``ovms_version``,
    ``ovms_api_key``."""

    backend_name = "ovms"


class opea(CompatBackend):  # noqa: N801
    """OPEA gateway.  Metadata ``opea_endpoint`` (env ``OPEA_API_ENDPOINT``)."""

    backend_name = "opea"
    _max_retry_delay_default = 60.0


class s3_kit(CompatBackend):  # noqa: N801
    """S3-compatible storage.  Metadata ``s3cfg`` = ``{accessKey, secretKey, endpoint}``
    (env ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``, ``S3_ENDPOINT``)."""

    backend_name = "s3_kit"
    _max_retry_delay_default = 60.0

    def _op(self, operation: str, **payload: Any) -> Any:
        from ..request import Request

        result = self._client().call(Request(operation=operation, payload=payload,
                                             backend=self.backend_name, key=self._pin))
        return result.data if result.data is not None else result.raw

    def upload_file(self, file_path: str, bucket: str, key: str) -> Any:
        return self._op("put_object", bucket=bucket, key=key, file=file_path)

    def download_file(self, bucket: str, key: str, file_path: str) -> Any:
        return self._op("get_object", bucket=bucket, key=key, file=file_path)

    def list_objects(self, bucket: str, prefix: str | None = None) -> Any:
        return self._op("list_objects_v2", bucket=bucket, **({"prefix": prefix} if prefix else {}))

    def delete_object(self, bucket: str, key: str) -> Any:
        return self._op("delete_object", bucket=bucket, key=key)

    def head_object(self, bucket: str, key: str) -> Any:
        return self._op("head_object", bucket=bucket, key=key)


ALL: dict[str, type[CompatBackend]] = {
    c.backend_name: c for c in (openai_api, claude, groq, gemini, hf_tgi, hf_tei, ollama, llvm,
                                ovms, opea, s3_kit)
}
