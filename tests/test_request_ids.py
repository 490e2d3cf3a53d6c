"""Request ids are UUID-shaped, unique across threads, and not shared with a forked child."""

from __future__ import annotations

import os
import threading
import uuid

from ipfs_accelerate_py.request import Request, new_request_id


def _is_uuid4_shaped(value: str) -> bool:
    parsed = uuid.UUID(value)
    return str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_are_uuid_shaped():
    assert all(_is_uuid4_shaped(new_request_id()) for _ in range(1000))
    assert _is_uuid4_shaped(Request("chat").request_id)


def test_ids_are_unique_across_threads():
    out: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        out[i].extend(new_request_id() for _ in range(20_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [x for part in out for x in part]
    assert len(set(ids)) == len(ids) == 160_000


def test_a_forked_child_makes_other_ids():
    parent = [new_request_id() for _ in range(3)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, ",".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split(",")
    os.waitpid(pid, 0)
    assert len(child) == 3 and all(_is_uuid4_shaped(c) for c in child)
    assert child[0][:23] != parent[0][:23]  # a fresh random prefix
    assert not set(child) & set(parent + [new_request_id() for _ in range(3)])
