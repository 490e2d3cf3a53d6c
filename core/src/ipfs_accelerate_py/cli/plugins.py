"""``ipfs-accelerate plugins``: installed backends, strategies and their versions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..jobs import _json_safe
from .common import EXIT_OK, plugin_manager


def register(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list installed backends, strategies and their versions",
                       description="List the installed plugins (distribution and version), the "
                                   "operations of each backend (and which stream), the key-selection "
                                   "strategies, and which backends the simulator can serve.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pm = plugin_manager()
    infos = pm.list_plugins()
    backends = pm.backends()
    servers = pm.protocol_servers()
    strategies = pm.strategies()
    by_module: dict[str, Any] = {}
    for info in infos:
        by_module[info.name] = info

    def dist_of(obj: Any) -> tuple[str, str]:
        mod = getattr(obj, "__module__", "") or ""
        for info in infos:
            root = info.module.split(".")[0]
            if mod == root or mod.startswith(root + "."):
                return info.distribution or "-", info.version or "-"
        if mod.startswith("ipfs_accelerate_py"):
            from .. import __version__

            return "ipfs-accelerate-core", __version__
        return "-", "-"

    if args.json:
        out = {
            "plugins": [_json_safe(i) for i in infos],
            "backends": {n: {**c.describe(), "distribution": dist_of(c)[0], "version": dist_of(c)[1],
                             "protocol_server": n in servers, "env_keys": list(c.env_keys)}
                         for n, c in sorted(backends.items())},
            "strategies": {n: {"distribution": dist_of(s)[0], "version": dist_of(s)[1]}
                           for n, s in sorted(strategies.items())},
            "protocol_servers": sorted(servers),
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print("Backends:")
    if not backends:
        print("  (none installed: pip install a backend plugin, see the README)")
    for name, cls in sorted(backends.items()):
        dist, ver = dist_of(cls)
        extra = "  [simulator]" if name in servers else ""
        print(f"  {name:<10} {dist} {ver}  base {cls.default_base_url}{extra}")
        for op, desc in cls.operations.items():
            mark = " (streams)" if op in cls.streaming_operations else ""
            print(f"      {op:<22} {desc}{mark}")
    print("Strategies:")
    for name, s in sorted(strategies.items()):
        dist, ver = dist_of(s)
        print(f"  {name:<16} {dist} {ver}")
    only_servers = sorted(set(servers) - set(backends))
    if only_servers:
        print("Protocol servers without a backend: " + ", ".join(only_servers))
    return EXIT_OK
