"""The methods' registration in solo.methods.METHODS (idempotent, never replacing another
method), the Hydra plugin (cheap to import and discover, lazy and never fatal, the packaged configs
appended to the search path), and the kNN command (sfrik-knn: the checkout found, the methods
registered before main_knn.py runs).

Skipped as a whole where solo-learn is not installed (`make solo-learn` installs it).
"""

import json
import sys
import textwrap
import types

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

from helpers.processes import run_code, run_python

from sfrik_plugin.solo import AUH, SFRIK, register_methods
from sfrik_plugin.solo.knn import find_solo_learn_dir, split_args


def test_registration_adds_methods_idempotently():
    from solo.methods import METHODS

    assert register_methods() is METHODS
    size = len(METHODS)
    register_methods()
    assert len(METHODS) == size
    assert METHODS["sfrik"] is SFRIK and METHODS["auh"] is AUH
    assert METHODS["vicreg"].__module__ == "solo.methods.vicreg"  # built-ins untouched


def test_registration_never_replaces_another_method():
    other = type("Other", (), {})
    table = {"sfrik": other}
    with pytest.warns(RuntimeWarning, match="already"):
        register_methods(table)
    assert table["sfrik"] is other and table["auh"] is AUH


@pytest.mark.fresh_interpreter
def test_hydra_plugin_import_and_discovery_are_cheap(tmp_path):
    # from a folder outside the repository: the installed package, not the source tree
    proc = run_code(
        """
        import sys
        import hydra_plugins.sfrik_plugin.sfrik_searchpath as p
        assert "torch" not in sys.modules and "solo" not in sys.modules, "plugin import is not cheap"
        from hydra.core.plugins import Plugins
        from hydra.plugins.search_path_plugin import SearchPathPlugin
        found = Plugins.instance().discover(SearchPathPlugin)
        assert p.SFRIKSearchPathPlugin in found, found
        assert "torch" not in sys.modules and "solo" not in sys.modules, "plugin discovery is not cheap"
        from hydra import compose, initialize
        with initialize(version_base="1.2", config_path=None):
            cfg = compose(config_name="sfrik")  # read from pkg://sfrik_plugin_configs
        assert cfg.method == "sfrik"
        assert "torch" not in sys.modules and "solo" not in sys.modules, "composing a config is not cheap"
        print("ok")
    """,
        cwd=tmp_path,
    )
    assert proc.stdout.strip() == "ok"


@pytest.mark.fresh_interpreter
def test_sfrik_plugin_solo_import_does_not_need_solo(tmp_path):
    run_code(
        """
        import sys
        import sfrik_plugin.solo
        from sfrik_plugin.solo import register_methods
        assert "solo" not in sys.modules and "solo.methods" not in sys.modules
    """,
        cwd=tmp_path,
    )


def test_plugin_registration_is_lazy_and_never_fatal(monkeypatch):
    from hydra_plugins.sfrik_plugin import sfrik_searchpath as plugin

    # solo.methods not imported (an unrelated Hydra app): nothing is imported or registered
    monkeypatch.delitem(sys.modules, "solo.methods", raising=False)
    called = []
    monkeypatch.setattr("sfrik_plugin.solo.registration.register_methods", lambda: called.append(1))
    plugin.register_solo_methods()
    assert called == []

    def broken():
        raise ImportError("simulated broken solo install")

    monkeypatch.setitem(sys.modules, "solo.methods", types.ModuleType("solo.methods"))
    monkeypatch.setattr("sfrik_plugin.solo.registration.register_methods", broken)
    with pytest.warns(RuntimeWarning, match="could not register"):
        plugin.register_solo_methods()


@pytest.mark.fresh_interpreter
def test_plugin_appends_packaged_configs_and_registers(tmp_path):
    # a fresh process: composing "sfrik" without any config path goes through the plugin (the
    # import hook, which would register at `import solo.methods` already, switched off)
    proc = run_code(
        """
        from hydra import compose, initialize
        from solo.methods import METHODS
        assert "sfrik" not in METHODS
        with initialize(version_base="1.2", config_path=None):
            cfg = compose(config_name="sfrik")
        assert cfg.method == "sfrik"
        assert "sfrik" in METHODS and "auh" in METHODS
        print(METHODS["sfrik"].__module__)
    """,
        cwd=tmp_path,
        set_env={"SFRIK_PLUGIN_SOLO_HOOK": "0"},
    )
    assert proc.stdout.strip() == "sfrik_plugin.solo.sfrik"


# ---------------------------------------------------------------------------------------------
# kNN command


def test_knn_finds_checkout(tmp_path, monkeypatch):
    (tmp_path / "main_knn.py").write_text("")
    monkeypatch.delenv("SOLO_LEARN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_solo_learn_dir() == tmp_path.resolve()
    monkeypatch.chdir("/")
    monkeypatch.setenv("SOLO_LEARN_DIR", str(tmp_path))
    assert find_solo_learn_dir() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="no main_knn.py in"):
        find_solo_learn_dir(str(tmp_path / "nowhere"))  # explicit wins, even when wrong
    opts, rest = split_args(["--solo-learn-dir", "x", "--k", "10", "20", "--cpu", "--umap"])
    assert (opts.solo_learn_dir, opts.cpu, opts.umap, rest) == ("x", True, True, ["--k", "10", "20"])


@pytest.mark.fresh_interpreter
def test_knn_command_registers_then_runs_main_knn(tmp_path):
    # a stand-in main_knn.py (the real one needs CUDA) that reports what it would look up
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "main_knn.py").write_text(
        textwrap.dedent("""
        import json, sys
        from solo.methods import METHODS
        if __name__ == "__main__":
            print(json.dumps({"argv": sys.argv[1:], "sfrik": METHODS["sfrik"].__name__,
                              "auh": METHODS["auh"].__name__}))
    """)
    )
    knn = ["-m", "sfrik_plugin.solo.knn"]
    proc = run_python(
        *knn, "--solo-learn-dir", checkout, "--pretrained_checkpoint_dir", "d", "--k", 10, 20, cwd=tmp_path
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"argv": ["--pretrained_checkpoint_dir", "d", "--k", "10", "20"], "sfrik": "SFRIK", "auh": "AUH"}

    proc = run_python(*knn, "--k", "10", cwd=tmp_path, unset_env=["SOLO_LEARN_DIR"], check=False)
    assert proc.returncode != 0 and "sfrik-knn: no main_knn.py in" in proc.stderr
    # --help works without a checkout: this command's options, and where the script's would come from
    helped = run_python(*knn, "--help", cwd=tmp_path, unset_env=["SOLO_LEARN_DIR"])
    assert "--cpu" in helped.stdout and "--umap" in helped.stdout and "no main_knn.py in" in helped.stdout
    # with the stand-in: --cpu and --umap reach the script (main_umap.py here), which sees CUDA
    # moves kept on the CPU
    (checkout / "main_umap.py").write_text(
        textwrap.dedent("""
        import json, torch
        from solo.methods import METHODS
        x = torch.ones(2).cuda()
        m = torch.nn.Linear(2, 2).to("cuda")
        print(json.dumps({"device": str(x.device), "module": str(m.weight.device), "sfrik": METHODS["sfrik"].__name__}))
    """)
    )
    proc = run_python(*knn, "--solo-learn-dir", checkout, "--umap", "--cpu", cwd=tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"device": "cpu", "module": "cpu", "sfrik": "SFRIK"}
