"""Finding plugins: entry points, a broken plugin, strict mode, the block list, listing."""

from __future__ import annotations

import sys
import textwrap

import pytest

from ipfs_accelerate_py.errors import PluginError
from ipfs_accelerate_py.plugins import PluginLoadWarning, PluginManager


@pytest.fixture
def fake_dists(tmp_path, monkeypatch):
    """Two installed distributions on sys.path: one good plugin, one that fails to import."""
    (tmp_path / "good_plug.py").write_text(textwrap.dedent("""
        from ipfs_accelerate_py import hookimpl

        class Fancy:
            def select(self, request, candidates):
                return candidates[-1]

        @hookimpl
        def accelerate_strategies():
            return {"fancy": Fancy}
    """))
    (tmp_path / "bad_plug.py").write_text("raise ImportError('missing dependency xyz')\n")
    for dist, mod, ep in (("good-plug", "good_plug", "good"), ("bad-plug", "bad_plug", "bad")):
        info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[ipfs_accelerate]\n{ep} = {mod}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for m in ("good_plug", "bad_plug"):
        sys.modules.pop(m, None)


def test_broken_plugin_is_skipped_with_a_warning_naming_it(fake_dists):
    pm = PluginManager(disabled=())
    with pytest.warns(PluginLoadWarning, match="'bad'.*bad-plug.*missing dependency xyz"):
        infos = pm.list_plugins()
    good = [i for i in infos if i.name == "good"]
    assert good and good[0].distribution == "good-plug" and good[0].version == "1.2.3"
    assert "fancy" in pm.strategies()


def test_strict_mode_makes_a_broken_plugin_an_error(fake_dists):
    with pytest.raises(PluginError, match="bad"):
        PluginManager(strict=True, disabled=()).load()


def test_environment_blocks_named_plugins(fake_dists, monkeypatch, recwarn):
    monkeypatch.setenv("IPFS_ACCELERATE_DISABLE_PLUGINS", "bad, good")
    pm = PluginManager()
    names = [i.name for i in pm.list_plugins()]
    assert "bad" not in names and "good" not in names
    assert not [w for w in recwarn if issubclass(w.category, PluginLoadWarning)
                and ("'bad'" in str(w.message) or "'good'" in str(w.message))]


def test_loading_is_lazy_and_in_stable_order(fake_dists):
    pm = PluginManager(disabled={"bad"})
    assert "good_plug" not in sys.modules  # nothing imported before first use
    first = [i.name for i in pm.list_plugins()]
    again = [i.name for i in PluginManager(disabled={"bad"}).list_plugins()]
    assert first == again and "good_plug" in sys.modules


def test_duplicate_backend_names_are_reported():
    from ipfs_accelerate_py import hookimpl
    from ipfs_accelerate_py.backend import Backend

    class A(Backend):
        name = "dup"

    class B(Backend):
        name = "dup"

    class P1:
        @hookimpl
        def accelerate_backends(self):
            return [A]

    class P2:
        @hookimpl
        def accelerate_backends(self):
            return [B]

    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(P1(), "p1")
    pm.add_plugin(P2(), "p2")
    with pytest.warns(PluginLoadWarning, match="registered twice"):
        assert pm.backends()["dup"] in (A, B)
    strict = PluginManager(load_entry_points=False, strict=True)
    strict.add_plugin(P1(), "p1")
    strict.add_plugin(P2(), "p2")
    with pytest.raises(PluginError, match="twice"):
        strict.backends()


def _backend(name):
    from ipfs_accelerate_py.backend import Backend

    return type(f"B_{name}", (Backend,), {"name": name})


class _Registers:
    def __init__(self, *classes):
        self.classes = list(classes)

    from ipfs_accelerate_py import hookimpl as _hookimpl

    @_hookimpl
    def accelerate_backends(self):
        return self.classes


def test_registration_hooks_are_called_through_pluggy():
    from ipfs_accelerate_py import hookimpl

    seen = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def accelerate_backends(self):
            result = yield
            seen.append(len(result))
            return result

    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(_Registers(_backend("one")), "one")
    pm.add_plugin(Wrapper(), "wrapper")
    traced = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kw: traced.append(name),
                                      lambda *a: None)
    assert "one" in pm.backends()
    undo()
    assert seen == [1] and "accelerate_backends" in traced


def test_register_as_well_as_add_plugin_resets_the_registries():
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(_Registers(_backend("first")), "first")
    assert set(pm.backends()) == {"first"}
    gen = pm.generation
    pm.register(_Registers(_backend("second")), name="second")  # plain pluggy register
    assert set(pm.backends()) == {"first", "second"} and pm.generation > gen
    pm.unregister(name="second")
    assert set(pm.backends()) == {"first"}


def test_a_plugin_failing_to_register_is_named_and_the_others_kept():
    from ipfs_accelerate_py import hookimpl

    class Broken:
        @hookimpl
        def accelerate_backends(self):
            raise RuntimeError("import went wrong")

    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(_Registers(_backend("fine")), "fine")
    pm.add_plugin(Broken(), "broken-one")
    with pytest.warns(PluginLoadWarning, match="broken-one.*import went wrong"):
        assert set(pm.backends()) == {"fine"}
    strict = PluginManager(load_entry_points=False, strict=True)
    strict.add_plugin(Broken(), "broken-one")
    with pytest.raises(PluginError, match="broken-one"):
        strict.backends()
