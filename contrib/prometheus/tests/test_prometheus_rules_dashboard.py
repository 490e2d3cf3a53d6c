"""The shipped alerting rules and Grafana dashboard: promtool accepts the rules and their
unit tests pass, and every metric they name is one the exporter really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, Request, RetryPolicy
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_prometheus import Metrics, grafana_dashboard_path, rules_path, start_exporter

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))
import echo_backend  # noqa: E402

METRIC = re.compile(r"\bipfs_accelerate_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("", "_count", "_sum", "_created")}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # Debian's prometheus package, installed by the project's script
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-tools.sh")], check=True,
                       timeout=900)
        path = shutil.which("promtool")
    assert path, "promtool missing after scripts/install-test-tools.sh"
    return path


def exported_names() -> set[str]:
    """Scrape a real exporter after real traffic; expand each family by its type (a
    labelled counter with no sample yet is still exported once it counts)."""
    registry = CollectorRegistry()
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo")
    pm.add_plugin(Metrics(registry), name="metrics")
    server = LocalServer(echo_backend.EchoServer())
    server.script(ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                      headers={"retry-after": "0"}),
                  ServerResponse.json({"error": {"message": "boom"}}, 503))
    try:
        with Client([BackendConfig("echo", keys=["test-key-1"], base_url=server.url)],
                    ClientConfig(retry=RetryPolicy(base_delay=0.001),
                                 breaker=BreakerPolicy(minimum_calls=100)),
                    plugin_manager=pm) as client:
            client.call(Request("echo", {"n": 1}, backend="echo"))
            with start_exporter(client, port=0, addr="127.0.0.1", registry=registry) as exp:
                text = requests.get(exp.url, timeout=5).text
    finally:
        server.close()
    names: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.update(fam.name + s for s in SUFFIXES.get(fam.type, ("",)))
        names.update(s.name for s in fam.samples)
    return names


def test_promtool_accepts_the_alerting_rules():
    out = subprocess.run([promtool(), "check", "rules", str(rules_path())], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"SUCCESS: (\d+) rules found", out.stdout).group(1) == "8"


def test_alerting_rules_fire_on_synthetic_series(tmp_path):
    """promtool's rule unit tests: an open breaker and a rejected key alert; a closed one not."""
    (tmp_path / "t.yml").write_text(json.dumps({
        "rule_files": [str(rules_path())],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'ipfs_accelerate_breaker_state{job="w",instance="a",backend="openai",state="open"}',
                 "values": "0 1 1 1 1"},
                {"series": 'ipfs_accelerate_breaker_state{job="w",instance="a",backend="groq",state="open"}',
                 "values": "0 0 0 0 0"},
                {"series": 'ipfs_accelerate_key_healthy{job="w",instance="a",backend="openai",key_id="key-2"}',
                 "values": "1 1 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "IpfsAccelerateBreakerOpen", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "job": "w", "instance": "a",
                                    "backend": "openai"},
                     "exp_annotations": {
                         "summary": "ipfs-accelerate: openai circuit breaker open",
                         "description": "The breaker of openai on a has not been closed for over "
                                        "a minute: the service is failing and requests wait in "
                                        "the queue."}}]},
                {"eval_time": "1m", "alertname": "IpfsAccelerateKeyRejected", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "IpfsAccelerateKeyRejected", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "job": "w", "instance": "a",
                                    "backend": "openai", "key_id": "key-2"},
                     "exp_annotations": {
                         "summary": "ipfs-accelerate: key key-2 of openai rejected",
                         "description": "The provider rejected key key-2 (auth error); it is out "
                                        "of rotation on a."}}]},
            ],
        }],
    }))
    out = subprocess.run([promtool(), "test", "rules", str(tmp_path / "t.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names()


def test_rules_name_only_exported_metrics(exported):
    text = "\n".join(ln for ln in rules_path().read_text().splitlines()
                     if not ln.lstrip().startswith("#"))  # the header names the package
    named = set(METRIC.findall(text))
    assert len(named) >= 8
    assert named <= exported, sorted(named - exported)


def test_grafana_dashboard_queries_only_exported_metrics(exported):
    dash = json.loads(grafana_dashboard_path().read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"]]
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert len(named) >= 15  # nearly every exported metric has a panel
    assert named <= exported, sorted(named - exported)
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dash["panels"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_a_misspelt_metric_would_be_caught(exported):
    assert "ipfs_accelerate_requests_total" in exported
    assert "ipfs_accelerate_request_duration_seconds_bucket" in exported
    assert "ipfs_accelerate_limiter_headroom" in exported
    assert "ipfs_accelerate_request_total" not in exported
