"""The ways in: ``Client.serve_dashboard`` (a firstresult hook, so the core never names
this package) and ``--dashboard PORT`` on ``batch`` and ``demo`` (the command line's hooks)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import urllib.request

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
from ipfs_accelerate_py.cli import build_parser
from ipfs_accelerate_py.cli.common import start_watchers, stop_watchers
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.plugins import PluginManager


def _client(pm: PluginManager | None = None) -> Client:
    return Client([BackendConfig("openai", keys=["test-key-1"], base_url="http://127.0.0.1:9/v1")],
                  ClientConfig(max_concurrency=1), **({"plugin_manager": pm} if pm else {}))


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def test_client_serve_dashboard_serves_the_page_through_the_plugin():
    with _client() as client:
        page = client.serve_dashboard(0)
        try:
            assert page.url.startswith("http://127.0.0.1:")
            status, body = _get(page.url)
            assert status == 200 and "<html" in body.lower()
        finally:
            page.close()


def test_client_serve_dashboard_without_the_plugin_names_the_extra():
    pm = PluginManager(load_entry_points=False)
    from ipfs_accelerate_openai import plugin as openai_plugin

    pm.add_plugin(openai_plugin, name="openai")
    with _client(pm) as client:
        with pytest.raises(ConfigError, match="dashboard extra"):
            client.serve_dashboard(0)


@pytest.mark.parametrize("command", ["batch", "demo"])
def test_dashboard_option_is_added_to_batch_and_demo(command):
    out = subprocess.run([sys.executable, "-m", "ipfs_accelerate_py.cli", command, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--dashboard PORT" in out.stdout


def test_the_cli_hook_starts_and_stops_the_page_for_a_running_command():
    args = build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl", "--dashboard", "0"])
    progress = argparse.Namespace(done=3, total=10, failed=1)
    with _client() as client:
        watchers = start_watchers("batch", args, client, progress)
        assert len(watchers) == 1
        url = watchers[0].url
        status, _ = _get(url)
        assert status == 200
        stop_watchers(watchers)
        with pytest.raises(OSError):
            _get(url)
    # without --dashboard nothing starts
    plain = build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    with _client() as client:
        assert start_watchers("batch", plain, client, progress) == []
