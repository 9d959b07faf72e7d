"""The fast loop's guard (make test-fast): a test that starts a process (a fresh interpreter, a
worker) or calls torch.compile takes seconds, so it carries the fresh_interpreter marker (or slow)
and `make test-fast` leaves it out. With SFRIK_FAST_LOOP=1 (what make test-fast sets), an unmarked
test that does either fails, naming the marker, so the fast loop stays fast as tests are added."""

import contextlib
import multiprocessing.process
import os
import subprocess
from collections.abc import Iterator

import pytest
import torch

FAST_LOOP_ENV = "SFRIK_FAST_LOOP"
MARKER = "fresh_interpreter"
_unmarked: list[str] = []  # the node id of the running test while it carries neither marker


def _refuse(what: str) -> None:
    if _unmarked:
        pytest.fail(
            f"{_unmarked[-1]} {what} but is not marked {MARKER} (or slow): mark it "
            f"(@pytest.mark.{MARKER}) so that `make test-fast` leaves it out",
            pytrace=False,
        )


def install(config: pytest.Config) -> None:
    """Wraps process starts and torch.compile, and watches each test's phases, when the fast loop
    asks for it (SFRIK_FAST_LOOP=1)."""
    if os.environ.get(FAST_LOOP_ENV) != "1":
        return
    config.pluginmanager.register(_Watcher(), "sfrik_fast_loop")
    popen, start, compile_ = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start, torch.compile

    def popen_init(self, *args, **kwargs):
        _refuse("starts a process")
        return popen(self, *args, **kwargs)

    def process_start(self):
        _refuse("starts a process")
        return start(self)

    def torch_compile(*args, **kwargs):
        _refuse("calls torch.compile")
        return compile_(*args, **kwargs)

    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start = process_start  # type: ignore[method-assign]
    torch.compile = torch_compile  # type: ignore[assignment]


@contextlib.contextmanager
def watching(item: pytest.Item) -> Iterator[None]:
    """Within the block (a test's setup, call or teardown), an unmarked test may not start a
    process or compile."""
    marked = item.get_closest_marker(MARKER) is not None or item.get_closest_marker("slow") is not None
    if not marked:
        _unmarked.append(item.nodeid)
    try:
        yield
    finally:
        if not marked:
            _unmarked.pop()


class _Watcher:
    """The hooks: each phase of each test runs inside watching(item)."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        with watching(item):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        with watching(item):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item):
        with watching(item):
            yield


def pytest_configure(config: pytest.Config) -> None:
    """As a plugin of its own (pytest -p helpers.fast_loop), outside this suite's conftest: how
    tests/test_fast_loop.py checks the guard on a test file of its own."""
    install(config)
