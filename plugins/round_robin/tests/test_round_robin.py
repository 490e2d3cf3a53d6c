from ipfs_accelerate_round_robin import RoundRobin

from ipfs_accelerate_py.request import Request
from ipfs_accelerate_sim.testing import StrategyContract


class TestRoundRobinContract(StrategyContract):
    strategy_factory = RoundRobin


def test_rotates_in_order_and_skips_keys_without_capacity():
    keys = StrategyContract._candidates(4)
    s = RoundRobin()
    picks = [s.select(Request("op"), keys).key_id for _ in range(6)]
    assert picks == ["k0", "k1", "k2", "k3", "k0", "k1"]
    # k2 has no capacity now (not offered): rotation continues past it
    offered = [keys[0], keys[1], keys[3]]
    assert s.select(Request("op"), offered).key_id == "k3"
    assert s.select(Request("op"), offered).key_id == "k0"


def test_registered_under_its_name():
    from ipfs_accelerate_py.plugins import PluginManager

    pm = PluginManager()
    assert pm.strategy_factory("round-robin") is RoundRobin
