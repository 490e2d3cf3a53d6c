"""Fixtures: moto's standalone S3 server, a fault-injecting proxy in front of it, and
pipeline clients pointed at either."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Iterator

import pytest
from ipfs_accelerate_py import Client
from ipfs_accelerate_s3_kit import S3Kit

sys.path.insert(0, os.path.dirname(__file__))  # s3_kit_helpers / s3_kit_proxy beside this file

from s3_kit_helpers import MotoServer, make_client  # noqa: E402


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(moto_server: MotoServer) -> Iterator[Client]:
    with make_client(moto_server.url) as c:
        yield c


@pytest.fixture
def kit(client: Client) -> S3Kit:
    return S3Kit(client)


@pytest.fixture
def bucket(kit: S3Kit) -> str:
    name = "b-" + uuid.uuid4().hex[:12]
    kit.create_bucket(name)
    return name


@pytest.fixture
def proxy(moto_server: MotoServer):
    from s3_kit_proxy import S3Proxy

    p = S3Proxy(moto_server.url)
    yield p
    p.close()


@pytest.fixture
def pclient(proxy) -> Iterator[Client]:
    """A client whose S3 endpoint is the fault-injecting proxy in front of moto."""
    with make_client(proxy.url) as c:
        yield c


@pytest.fixture
def pkit(pclient: Client) -> S3Kit:
    return S3Kit(pclient)
