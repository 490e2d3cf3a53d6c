"""A key never shows: repr, str, format, pickling, logging, stats, errors, events."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py import ApiKey, BackendConfig, Client, ClientConfig, RetryPolicy, Secret
from ipfs_accelerate_py.server import ServerResponse

secrets = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8,
                  max_size=64).filter(
    # Mixed case and a digit: a value such as "latency_" is a word the stats print anyway.
    lambda s: "Secret" not in s and "*" not in s and any(c.isupper() for c in s)
    and any(c.islower() for c in s) and any(c.isdigit() for c in s))


@given(secrets)
def test_secret_never_prints_itself(value):
    s = Secret(value)
    for shown in (repr(s), str(s), f"{s}", f"{s!r:>80}", "%s" % s, "%r" % (s,), repr([s]),
                  repr({"k": s})):
        assert value not in shown
    assert s.reveal() == value
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert copy.deepcopy(s) is s
    key = ApiKey(value, name="primary")
    assert value not in repr(key) and value not in str(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    unnamed = ApiKey(value)
    assert unnamed.key_id.startswith("key-") and value not in unnamed.key_id


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secrets)
def test_secret_absent_from_every_pipeline_output(pm, echo_server, caplog, value):
    caplog.set_level(logging.DEBUG)
    echo_server.clear()
    echo_server.script(ServerResponse.json({"error": {"message": "bad key"}}, 401),
                       ServerResponse.json({"error": {"message": "x"}}, 500))
    with Client([BackendConfig("echo", keys=[value, value + "-2"], base_url=echo_server.url)],
                ClientConfig(retry=RetryPolicy(base_delay=0.001)), plugin_manager=pm) as c:
        res = c.call("echo", "echo", {"n": 1})
        outputs = [repr(c), repr(res), json.dumps(c.stats().to_dict(), default=str),
                   c.stats().table(), caplog.text]
        try:
            echo_server.script(ServerResponse.json({"error": {"message": "no"}}, 400))
            c.call("echo", "echo", {"n": 2})
        except Exception as exc:
            outputs += [str(exc), repr(exc), repr(exc.__dict__)]
            # the response stays reachable for debugging, the key does not
            outputs.append(repr(dict(exc.response.request.headers)))
            assert exc.response.status_code == 400
    for text in outputs:
        assert value not in text
    # but it was on the wire
    assert any(r.bearer_token() in (value, value + "-2") for r in echo_server.requests)
