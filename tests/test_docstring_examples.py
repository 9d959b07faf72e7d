"""The Example sections of the public API's docstrings run, and print what they say."""

import doctest
import importlib

import pytest
import torch

MODULES = [
    "sfrik_plugin.series",
    "sfrik_plugin.regulariser",
    "sfrik_plugin.losses",
    "sfrik_plugin.kernels",
    "sfrik_experiments.utils.arguments",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, globs={"torch": torch, **vars(module)}) if t.examples]
    assert tests, f"{name} has no examples"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) of {name} failed (see the output above)"


def test_the_extension_example():
    import sfrik_plugin

    assert "sfrik_plugin.extension_info()" in sfrik_plugin.extension_info.__doc__
