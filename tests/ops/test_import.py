"""What `import sfrik_plugin` promises, each in a fresh interpreter started outside the source
tree: the operators exist with their fake, autograd and autocast registrations before any public
function is called (opcheck and torch.compile pass), `import sfrik_plugin.ops` works on its own,
and a Hydra app with the plugin installed composes the packaged configs without importing torch."""

import pytest
from helpers.cuda import requires_extension
from helpers.processes import run_code

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

TIMEOUT_S = 300


def run_python(code: str, cwd) -> str:
    """What code prints in a fresh interpreter started in cwd."""
    return run_code(code, cwd=cwd, timeout=TIMEOUT_S).stdout.strip()


@requires_extension
def test_import_registers_the_operators_for_opcheck_and_compile(tmp_path):
    out = run_python(
        """
        import torch
        import sfrik_plugin
        from torch.library import opcheck
        names = ("legendre_series", "legendre_series_reduce", "legendre_series_backward", "gram_series_sum")
        assert all(hasattr(torch.ops.sfrik, n) for n in names)
        t = (torch.rand(6, 5, dtype=torch.float64) * 2 - 1).requires_grad_()
        opcheck(torch.ops.sfrik.legendre_series.default, (t, [0.0, 1.0, 40.0, 40.0], 64))
        opcheck(torch.ops.sfrik.legendre_series_reduce.default, (t, [0.0, 1.0, 40.0], 64, True))
        x = torch.nn.functional.normalize(torch.randn(9, 4, dtype=torch.float64), dim=1)
        opcheck(torch.ops.sfrik.gram_series_sum.default, (x, None, [0.0, 1.0, 2.0], 4, 4, True, False),
                test_utils=("test_schema", "test_faketensor"))

        @torch.compile(fullgraph=True, backend="eager")
        def f(t):
            return torch.ops.sfrik.legendre_series_reduce(t, [0.0, 1.0, 40.0], 64, True)

        expected = torch.ops.sfrik.legendre_series_reduce(t.detach(), [0.0, 1.0, 40.0], 64, True)
        assert torch.allclose(f(t.detach()), expected)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.ops.sfrik.legendre_series(t.detach().float().bfloat16(), [0.0, 1.0], 64)
        assert y.dtype == torch.float32
        print("ok")
    """,
        tmp_path,
    )
    assert out.endswith("ok")


@requires_extension
def test_ops_module_imports_on_its_own(tmp_path):
    assert (
        run_python("import sfrik_plugin.ops, torch; print(hasattr(torch.ops.sfrik, 'legendre_series'))", tmp_path)
        == "True"
    )


def test_hydra_app_composes_the_plugin_configs_without_torch(tmp_path):
    pytest.importorskip("hydra", reason="hydra-core is not installed")
    out = run_python(
        """
        import sys
        from hydra import compose, initialize
        with initialize(version_base="1.2", config_path=None):
            cfg = compose(config_name="sfrik")        # pkg://sfrik_plugin_configs, via the Hydra plugin
        assert cfg.method == "sfrik", cfg.method
        assert "torch" not in sys.modules and "sfrik_plugin" not in sys.modules, sorted(sys.modules)[:20]
        print("ok")
    """,
        tmp_path,
    )
    assert out == "ok"
