"""The shared backend contract, run against the TGI protocol server."""

from __future__ import annotations

from ipfs_accelerate_sim.testing import BackendContract
from ipfs_accelerate_hf_tgi.backend import TGIBackend
from ipfs_accelerate_hf_tgi.server import TGIServer

MESSAGES = [{"role": "user", "content": "What is Deep Learning?"}]


class TestTGIContract(BackendContract):
    backend_class = TGIBackend
    server_class = TGIServer
    samples = {
        "generate": {"inputs": "What is Deep Learning?", "parameters": {"max_new_tokens": 20}},
        "chat": {"messages": MESSAGES, "max_tokens": 20},
        "completions": {"prompt": "What is Deep Learning?", "max_tokens": 20},
        "models": {},
        "tokenize": {"inputs": "Hello world"},
        "info": {},
        "health": {},
    }
    stream_sample = ("generate", {"inputs": "What is Deep Learning?",
                                  "parameters": {"max_new_tokens": 20, "details": True}})
    plugin_module = "ipfs_accelerate_hf_tgi.plugin"

    def complete_json_answer(self, operation, whole):
        answer = super().complete_json_answer(operation, whole)
        if operation == "generate":  # /generate carries its token counts in headers
            answer.with_headers({"x-prompt-tokens": str(whole.usage.prompt_tokens),
                                 "x-generated-tokens": str(whole.usage.completion_tokens)})
        return answer


class TestTGIChatStreamContract(TestTGIContract):
    """The same contract with the Messages API as the streamed operation."""

    samples = {"chat": {"messages": MESSAGES}}
    stream_sample = ("chat", {"messages": MESSAGES})


class TestTGICompletionsStreamContract(TestTGIContract):
    samples = {"completions": {"prompt": "What is Deep Learning?"}}
    stream_sample = ("completions", {"prompt": "What is Deep Learning?"})
