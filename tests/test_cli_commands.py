"""``ipfs-accelerate`` end to end, in subprocesses, against the simulator."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest
import requests

from test_cli_helpers import CLI, clean_env, run_cli
from test_cli_helpers import main_in_process as _main
from ipfs_accelerate_py.plugins import get_plugin_manager
from ipfs_accelerate_sim import SimConfig, Simulator

COMMANDS = ["plugins", "chat", "embed", "infer", "batch", "sim", "demo"]


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(latency=0.002)) as s:
        yield s


def test_help_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(["--help"], capsys)
    assert code == 0
    for cmd in COMMANDS:
        assert cmd in out
        code, out_cmd, _ = _main([cmd, "--help"], capsys)
        assert code == 0
        assert f"usage: ipfs-accelerate {cmd}" in out_cmd
        assert len(out_cmd) > 300  # says what the options do


def test_console_script_help() -> None:
    r = run_cli(["--help"])
    assert r.returncode == 0 and "usage: ipfs-accelerate" in r.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main([], capsys)
    assert code == 2 and "COMMAND" in out


def test_plugins_lists_backends_operations_versions() -> None:
    pm = get_plugin_manager()
    r = run_cli(["plugins"])
    assert r.returncode == 0, r.stderr
    dists = {i.name: (i.distribution, i.version) for i in pm.list_plugins()}
    for name, cls in pm.backends().items():
        dist, version = dists.get(name, (f"ipfs-accelerate-{name.replace('_', '-')}", "0"))
        assert re.search(rf"^  {name}\s+{re.escape(dist)} {re.escape(version)}", r.stdout, re.M), name
        for op in cls.operations:
            assert op in r.stdout
    assert "(streams)" in r.stdout
    for name in pm.strategies():
        assert name in r.stdout
    data = json.loads(run_cli(["plugins", "--json"]).stdout)
    assert data["backends"]["openai"]["operations"].keys() >= {"chat", "embeddings"}
    assert data["backends"]["openai"]["distribution"] == "ipfs-accelerate-openai"
    assert "least-loaded" in data["strategies"]
    assert "openai" in data["protocol_servers"]
    assert {p["name"] for p in data["plugins"]} >= {"openai", "claude"}


def test_chat_streams_to_the_terminal(sim: Simulator) -> None:
    r = run_cli(["chat", "--backend", "openai", "--base-url", sim.url + "/openai/v1",
                 "--model", "gpt-4o-mini", "Hello", "there"],
                env={"OPENAI_API_KEY": "test-key-1"})
    assert r.returncode == 0, r.stderr
    text = r.stdout.strip()
    assert text and all(w.isalpha() for w in text.split())
    # the same text without streaming: deterministic content from the protocol server
    r2 = run_cli(["chat", "--backend", "openai", "--base-url", sim.url + "/openai/v1",
                  "--model", "gpt-4o-mini", "--no-stream", "Hello", "there"],
                 env={"OPENAI_API_KEY": "test-key-1"})
    assert r2.returncode == 0 and r2.stdout.strip() == text


def test_chat_json_output(sim: Simulator) -> None:
    r = run_cli(["chat", "-b", "claude", "--base-url", sim.url + "/claude", "-m", "claude-sim-haiku",
                 "--max-tokens", "20", "--json", "hi"], env={"ANTHROPIC_API_KEY": "test-key-1"})
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["text"] and body["usage"]["total_tokens"] > 0
    assert body["raw"]["type"] == "message"  # the provider's own answer is kept


def test_embed(sim: Simulator) -> None:
    r = run_cli(["embed", "--backend", "openai", "--base-url", sim.url + "/openai/v1",
                 "--model", "text-embedding-3-small", "some text"], env={"OPENAI_API_KEY": "test-key-1"})
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    vectors = body["data"]
    assert isinstance(vectors, list) and len(vectors) == 1 and len(vectors[0]) > 8


def test_infer_on_an_inference_server(sim: Simulator) -> None:
    r = run_cli(["infer", "--backend", "hf_tgi", "--base-url", sim.url + "/hf_tgi",
                 "--max-tokens", "5", "Once upon a time"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_missing_key_is_a_clear_error(sim: Simulator, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(__import__("os").environ):
        if k.startswith("OPENAI_API_KEY"):
            monkeypatch.delenv(k)
    code, _, err = _main(["chat", "--backend", "openai", "--base-url", sim.url + "/openai/v1",
                          "-m", "m", "hi"], capsys)
    assert code == 2
    assert "OPENAI_API_KEY" in err and "Traceback" not in err


def test_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(["chat", "--backend", "nope", "hi"], capsys)
    assert code == 2 and "ipfs-accelerate-nope" in err


def test_provider_error_is_reported_not_raised(sim: Simulator) -> None:
    r = run_cli(["chat", "--backend", "openai", "--base-url", sim.url + "/openai/v1",
                 "--model", "no-such-model", "hi"], env={"OPENAI_API_KEY": "test-key-1"})
    assert r.returncode == 1
    assert "NotFound" in r.stderr and "Traceback" not in r.stderr


def test_sim_command_runs_as_its_own_process() -> None:
    proc = subprocess.Popen([*CLI, "sim", "--port", "0", "--rps", "1", "--burst", "1", "--seed", "3",
                             "--model", "openai=gpt-3.5-turbo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        first = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", first)
        assert m, first + proc.stderr.read()
        url = m.group(1)
        lines = [proc.stdout.readline() for _ in range(len(get_plugin_manager().protocol_servers()))]
        assert any(f"{url}/openai/v1" in ln for ln in lines)
        body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]}
        h = {"Authorization": "Bearer test-key-1"}
        assert requests.post(url + "/openai/v1/chat/completions", json=body, headers=h).status_code == 200
        assert requests.post(url + "/openai/v1/chat/completions", json=body, headers=h).status_code == 429
        stats = requests.get(url + "/_sim/stats").json()
        assert stats["requests"] == 2 and stats["rate_limited"] == 1 and stats["config"]["seed"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_sim_rejects_bad_outage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(["sim", "--outage", "5-3"], capsys)
    assert code == 2 and "START:END" in err


def test_demo_loses_nothing() -> None:
    start = time.monotonic()
    r = run_cli(["demo", "--requests", "200", "--outage-start", "0.5", "--outage-length", "0.7"],
                timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lost: 0" in r.stdout
    assert "openai/demo-key-1" in r.stdout and "openai/demo-key-3" in r.stdout  # the table
    assert re.search(r"(\d+) calls during the outage", r.stdout)
    assert int(re.search(r"(\d+) calls during the outage", r.stdout).group(1)) > 0
    assert "200/200" in r.stderr  # the progress line
    assert "demo-key-1" not in r.stderr.replace("openai/demo-key-1", "")
    del start


@pytest.mark.parametrize("args,check", [
    (["embed", "-b", "hf_tei", "--base-url", "{sim}/hf_tei", "some text"],
     lambda out: len(json.loads(out)["data"][0]) > 4),
    (["infer", "-b", "ollama", "--base-url", "{sim}/ollama", "-m", "llama3.2:latest", "Once"],
     lambda out: out.strip() and not out.startswith("{")),
], ids=["embed-tei-inputs", "infer-ollama-prompt"])
def test_payload_shape_follows_the_backend(sim: Simulator, args: list[str], check) -> None:
    """TEI embeds "inputs", Ollama generates from a "prompt": the CLI shapes the text
    the way each backend's own checks accept."""
    r = run_cli([a.replace("{sim}", sim.url) for a in args])
    assert r.returncode == 0, r.stderr
    assert check(r.stdout)


def test_demo_falls_back_to_another_backend_without_openai() -> None:
    r = run_cli(["demo", "--requests", "40"], env={"IPFS_ACCELERATE_DISABLE_PLUGINS": "openai"},
                timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "openai" not in r.stdout.split("\n", 1)[0]
    assert "lost: 0" in r.stdout
