"""Configuration is refused at construction, with the field named: nan, inf, bools,
strings and fractions where a count belongs, a base URL that cannot work."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ipfs_accelerate_py.config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.keys import ApiKey

NAN, INF = math.nan, math.inf

CASES: list[tuple[Any, dict[str, Any], str]] = [
    (ClientConfig, {"max_concurrency": NAN}, "max_concurrency"),
    (ClientConfig, {"max_concurrency": INF}, "max_concurrency"),
    (ClientConfig, {"max_concurrency": 2.5}, "max_concurrency"),
    (ClientConfig, {"max_concurrency": "8"}, "max_concurrency"),
    (ClientConfig, {"max_concurrency": True}, "max_concurrency"),
    (ClientConfig, {"max_concurrency": 0}, "max_concurrency"),
    (ClientConfig, {"queue_size": -1}, "queue_size"),
    (ClientConfig, {"default_deadline": INF}, "default_deadline"),
    (ClientConfig, {"default_deadline": NAN}, "default_deadline"),
    (ClientConfig, {"default_deadline": 0}, "default_deadline"),
    (ClientConfig, {"default_deadline": "600"}, "default_deadline"),
    (ClientConfig, {"latency_samples": 0.5}, "latency_samples"),
    (ClientConfig, {"fail_fast": "yes"}, "fail_fast"),
    (ClientConfig, {"strategy": ""}, "strategy"),
    (ClientConfig, {"retry": {"max_attempts": 3}}, "retry"),
    (RetryPolicy, {"max_attempts": 2.5}, "max_attempts"),
    (RetryPolicy, {"max_attempts": NAN}, "max_attempts"),
    (RetryPolicy, {"base_delay": INF}, "base_delay"),
    (RetryPolicy, {"base_delay": NAN}, "base_delay"),
    (RetryPolicy, {"max_delay": None}, "max_delay"),
    (RetryPolicy, {"max_retry_after": INF}, "max_retry_after"),
    (RetryPolicy, {"budget_ratio": NAN}, "budget_ratio"),
    (RetryPolicy, {"jitter": None}, "jitter"),
    (BreakerPolicy, {"window_size": 1.5}, "window_size"),
    (BreakerPolicy, {"failure_rate_threshold": NAN}, "failure_rate_threshold"),
    (BreakerPolicy, {"open_interval": INF}, "open_interval"),
    (BackendConfig, {"name": "openai", "base_url": "api.openai.com/v1"}, "base_url"),
    (BackendConfig, {"name": "openai", "base_url": "ftp://h/v1"}, "base_url"),
    (BackendConfig, {"name": "openai", "base_url": "http:///v1"}, "base_url"),
    (BackendConfig, {"name": "openai", "base_url": "http://h:99999/v1"}, "base_url"),
    (BackendConfig, {"name": "openai", "base_url": "http://h/v1\r\nX: y"}, "base_url"),
    (BackendConfig, {"name": "openai", "base_url": 8080}, "base_url"),
    (BackendConfig, {"name": "openai", "read_timeout": NAN}, "read_timeout"),
    (BackendConfig, {"name": "openai", "connect_timeout": INF}, "connect_timeout"),
    (BackendConfig, {"name": "openai", "max_concurrent_per_key": 1.5}, "max_concurrent_per_key"),
    (BackendConfig, {"name": "openai", "requests_per_minute": NAN}, "requests_per_minute"),
    (BackendConfig, {"name": "openai", "requests_per_minute": "60"}, "requests_per_minute"),
    (BackendConfig, {"name": "openai", "batch_window": INF}, "batch_window"),
    (BackendConfig, {"name": "openai", "keys": [42]}, "keys"),
    (BackendConfig, {"name": "openai", "options": ["a"]}, "options"),
    (BackendConfig, {"name": ""}, "name"),
    (ApiKey, {"secret": "test-key-1", "max_concurrent": 1.5}, "max_concurrent"),
    (ApiKey, {"secret": "test-key-1", "requests_per_minute": NAN}, "requests_per_minute"),
    (ApiKey, {"secret": "test-key-1", "tokens_per_minute": INF}, "tokens_per_minute"),
    (ApiKey, {"secret": "test-key-1", "burst": "10"}, "burst"),
    (ApiKey, {"secret": "test-key-1", "max_concurrent": True}, "max_concurrent"),
]


@pytest.mark.parametrize("cls,kwargs,field", CASES,
                         ids=[f"{c.__name__}-{f}-{kw[f]!r}" for c, kw, f in CASES])
def test_refused_at_construction_with_the_field_named(cls: Any, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert "test-key-1" not in str(info.value)


def test_sound_values_are_kept() -> None:
    cc = ClientConfig(max_concurrency=4.0, default_deadline=None, queue_size=None,
                      retry=RetryPolicy(max_attempts=3, base_delay=1))
    assert cc.max_concurrency == 4 and type(cc.max_concurrency) is int
    assert cc.default_deadline is None and cc.retry.max_attempts == 3
    bc = BackendConfig("openai", base_url="http://127.0.0.1:8080/v1", requests_per_minute=60)
    assert bc.base_url == "http://127.0.0.1:8080/v1" and bc.requests_per_minute == 60
    assert ApiKey(secret="test-key-1", max_concurrent=2.0).max_concurrent == 2.0
