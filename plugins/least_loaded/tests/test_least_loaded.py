from ipfs_accelerate_least_loaded import LeastLoaded

from ipfs_accelerate_py.request import Request
from ipfs_accelerate_sim.testing import StrategyContract


class TestLeastLoadedContract(StrategyContract):
    strategy_factory = LeastLoaded


class _Headroom:
    def __init__(self, value):
        self.value = value

    def headroom(self, now):
        return self.value


def test_fewest_in_flight_wins():
    keys = StrategyContract._candidates(3, in_flight=[3, 1, 2])
    assert LeastLoaded().select(Request("op"), keys).key_id == "k1"


def test_ties_broken_by_headroom_then_use():
    keys = StrategyContract._candidates(3, in_flight=[1, 1, 1])
    keys[0].limiter, keys[1].limiter, keys[2].limiter = _Headroom(0.2), _Headroom(0.9), _Headroom(0.9)
    keys[1].dispatched = 5
    assert LeastLoaded().select(Request("op"), keys).key_id == "k2"


def test_registered_under_its_name():
    from ipfs_accelerate_py.plugins import PluginManager

    assert PluginManager().strategy_factory("least-loaded") is LeastLoaded
