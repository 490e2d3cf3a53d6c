"""Prices: the dated default table, exact costs, snapshot names, overrides and their
errors; ``ipfs-accelerate prices``; ``batch --budget`` and the batch's cost summary."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from test_cli_helpers import main_in_process as _main
from test_cli_helpers import read_out, write_requests
from ipfs_accelerate_py.costs import Price, PriceBook, PriceTable, default_table, to_dollars
from ipfs_accelerate_py.costs.prices import model_names
from ipfs_accelerate_py.costs.report import dollars
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.results import Usage
from ipfs_accelerate_sim import SimConfig, Simulator


def test_the_default_table_names_its_date_and_source():
    table = default_table()
    assert table.as_of == "2025-06-30"
    assert "pricing" in table.source and "check" in table.source
    assert {"openai", "claude", "gemini", "groq"} <= set(table.prices)


def test_cost_is_exact_in_decimal():
    price = Price(input="0.15", output="0.60", cached_input="0.075", per_request="0.0001")
    units = price.cost_units(Usage.of(1_000_001, 333, cached=7))
    assert to_dollars(units) == (Decimal(1_000_001 - 7) * Decimal("0.15") + 7 * Decimal("0.075")
                                 + 333 * Decimal("0.60")) / 1_000_000 + Decimal("0.0001")
    # A million small costs add up exactly (floats would drift).
    tiny = Price(input="0.01", output="0")
    total = sum(to_dollars(tiny.cost_units(Usage.of(1, 0))) for _ in range(10_000))
    assert total == Decimal("0.0001")


def test_cache_writes_and_reads_are_priced_apart():
    price = Price(input="3", output="15", cached_input="0.30", cache_write="3.75")
    usage = Usage.of(1_000 + 2_000 + 500, 100, cached=2_000, cache_write=500)
    # 1000 fresh x 3 + 2000 read x 0.30 + 500 written x 3.75 + 100 out x 15, per 1M tokens
    assert to_dollars(price.cost_units(usage)) == Decimal("0.006975")


@pytest.mark.parametrize("name,found", [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"), ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("models/gemini-1.5-flash-002", "gemini-1.5-flash"), ("claude-3-5-haiku-latest",
                                                          "claude-3-5-haiku"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo")])
def test_dated_snapshots_take_their_model_s_price(name, found):
    assert found in model_names(name)
    table = default_table()
    backend = next(b for b, models in table.prices.items() if found in models)
    assert table.find(backend, name) is table.prices[backend][found]


@pytest.mark.parametrize("name", ["gpt-4o-audio-preview", "gpt-4o-mini-search", "my-model",
                                  "gpt-4o-mini-tts"])
def test_other_names_have_no_price_never_a_guess(name):
    assert default_table().find("openai", name) is None


def test_lookup_order_backend_option_then_user_table_then_hook_then_default():
    calls = []

    def hook(backend, model):
        calls.append(model)
        return {"input": "7", "output": "7"} if model == "hooked" else None

    user = PriceTable.parse({"openai": {"gpt-4o": {"input": "9", "output": "9"}}}, "mine")
    book = PriceBook(user, hook, {"openai": {"own": Price(input="1", output="1")}})
    assert book.lookup("openai", "own").input == 1
    assert book.lookup("openai", "gpt-4o").input == 9
    assert book.lookup("openai", "hooked").input == 7
    assert book.lookup("openai", "gpt-4o-mini").input == Decimal("0.15")
    assert book.lookup("openai", "nothing") is None
    book.lookup("openai", "hooked")
    assert calls.count("hooked") == 1  # remembered
    assert book.lookup("openai", None) is None


def test_a_price_hook_that_raises_leaves_the_model_unpriced(caplog):
    def hook(backend, model):
        raise RuntimeError("price service down")

    def bad(backend, model):
        return {"input": "cheap", "output": "1"}

    assert PriceBook(None, hook).lookup("openai", "gpt-4o") is None
    assert PriceBook(None, bad).lookup("openai", "gpt-4o") is None
    assert "price service down" in caplog.text and "must be a price" in caplog.text


@pytest.mark.parametrize("data,message", [
    ({"openai": {"m": {"input": "1"}}}, "needs input and output"),
    ({"openai": {"m": {"input": "x", "output": "1"}}}, "must be a price"),
    ({"openai": {"m": {"input": "-1", "output": "1"}}}, ">= 0"),
    ({"openai": {"m": {"input": "1", "output": "1", "typo": 2}}}, "unknown price field"),
    ({"openai": {"m": {"input": "0.0000001", "output": "1"}}}, "more decimals"),
    ({"openai": ["m"]}, "must map model names"),
])
def test_bad_price_files_are_refused_with_the_reason(tmp_path, data, message):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        PriceTable.load(path)


def test_unreadable_or_invalid_price_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        PriceTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        PriceTable.load(bad)


def test_dollars_shows_three_significant_digits():
    assert dollars(Decimal("0.0000102")) == "$0.0000102"
    assert dollars(Decimal("12.5")) == "$12.5000"
    assert dollars(Decimal("0")) == "$0"


# ------------------------------------------------------------------------------ command line
def test_prices_command_shows_the_table_date_and_overrides(tmp_path, capsys):
    code, out, _ = _main(["prices"], capsys)
    assert code == 0
    assert "as of 2025-06-30" in out and "gpt-4o-mini" in out and "claude-3-5-haiku" in out
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"as_of": "2026-01-01", "backends": {
        "openai": {"gpt-4o-mini": {"input": "0.10", "output": "0.40"},
                   "house-model": {"input": "0", "output": "0", "per_request": "0.002"}}}}))
    code, out, _ = _main(["prices", "--prices", str(mine), "--json", "-b", "openai"], capsys)
    rows = {r["model"]: r for r in json.loads(out)["prices"]}
    assert rows["gpt-4o-mini"]["input"] == "0.10" and "mine.json" in rows["gpt-4o-mini"]["from"]
    assert rows["house-model"]["per_request"] == "0.002"
    assert rows["gpt-4o"]["input"] == "2.50"  # the default where not overridden
    assert {r["backend"] for r in rows.values()} == {"openai"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"openai": {"m": {"input": "1"}}}))
    code, _, err = _main(["prices", "--prices", str(bad)], capsys)
    assert code == 2 and "needs input and output" in err


def write_capped(path: Path, n: int, max_tokens: int = 20) -> None:
    """Requests that cap their output: their worst case is small (without a cap a budget
    assumes ``Budget.output_tokens``, 4096)."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"r{i}", "backend": "openai", "operation": "chat",
                                "payload": {"model": "gpt-4o-mini", "max_tokens": max_tokens,
                                            "messages": [{"role": "user",
                                                          "content": f"request {i}"}]}}) + "\n")


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(latency=0.001)) as s:
        yield s


def test_batch_reports_cost_and_stops_at_its_budget(sim, tmp_path, capsys, monkeypatch):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_capped(inp, 40)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, stdout, _ = _main(["batch", str(inp), "-o", str(out), "--base-url",
                             sim.url + "/openai/v1", "--budget", "0.0002", "--concurrency", "4"],
                            capsys)
    rows = read_out(out)
    assert len(rows) == 40 and code == 1  # every request answered; some refused
    ok = [r for r in rows if r["ok"]]
    refused = [r for r in rows if not r["ok"]]
    assert ok and refused
    assert {r["error"]["type"] for r in refused} == {"BudgetExceeded"}
    assert all("budget 'batch'" in r["error"]["message"] for r in refused)
    spent = sum(Decimal(r["result"]["cost"]) for r in ok)
    assert spent <= Decimal("0.0002")
    line = next(x for x in stdout.splitlines() if x.startswith("cost: "))
    assert line.startswith(f"cost: {dollars(spent)} (openai/gpt-4o-mini {dollars(spent)})")


def test_batch_token_budget(sim, tmp_path, capsys, monkeypatch):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_capped(inp, 20)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, stdout, _ = _main(["batch", str(inp), "-o", str(out), "--base-url",
                             sim.url + "/openai/v1", "--budget-tokens", "200"], capsys)
    rows = read_out(out)
    used = sum(r["result"]["usage"]["total_tokens"] for r in rows if r["ok"])
    assert 0 < used <= 200 and any(not r["ok"] for r in rows)
    assert "cost: $" in stdout


def test_batch_without_budget_prices_everything(sim, tmp_path, capsys, monkeypatch):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_requests(inp, 5)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-1")
    code, stdout, _ = _main(["batch", str(inp), "-o", str(out), "--base-url",
                             sim.url + "/openai/v1"], capsys)
    assert code == 0
    costs = [Decimal(r["result"]["cost"]) for r in read_out(Path(out))]
    assert len(costs) == 5 and all(c > 0 for c in costs)
    assert "without a price" not in stdout and "cost by" in stdout
