"""A run cut short is not a result.

Lightning catches KeyboardInterrupt inside ``Trainer.fit`` and returns as if training had ended
(2.1), or exits with status 1 (newer releases); SIGTERM kills a Python process before any result
is written only as long as nobody installs a handler, and Lightning does. The commands that train
therefore:

- run under ``exits_on_interrupt`` (their ``main``): SIGINT and SIGTERM raise ``RunInterrupted``
  wherever the program is, and the command ends with status 128 + the signal (130 for Ctrl-C,
  143 for SIGTERM) after saying that nothing was recorded for the run in progress;
- call ``fit_to_end`` instead of ``trainer.fit`` (or ``check_fit_completed`` after it): a fit that
  was interrupted, or that stopped before its planned epochs or steps, raises instead of
  returning a half-trained model;
- write a result inside ``signals_deferred()``, so that a signal arriving during the write takes
  effect after it, never in the middle of a line.

A signal that the command inherited as ignored (``nohup``, ``cmd &`` in a script) stays ignored.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
F = TypeVar("F", bound=Callable[..., Any])


class RunInterrupted(KeyboardInterrupt):
    """Training or a command stopped before its end: by a signal (signum), or a fit that returned
    before its planned epochs or steps (signum None). A KeyboardInterrupt, so that nothing that
    handles ordinary errors (``except Exception``) records it as a failed run and goes on."""

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum is not None else 1


class _State:
    received: int | None = None  # the first SIGINT / SIGTERM this process received
    deferring = 0  # depth of signals_deferred()
    pending: int | None = None  # a signal that arrived while deferring


def _handler(signum: int, frame: object) -> None:
    if _State.received is None:
        _State.received = signum
    if _State.deferring:
        _State.pending = signum
        return
    raise RunInterrupted(f"{signal.Signals(signum).name} received", signum)


def received_signal() -> int | None:
    """The first SIGINT or SIGTERM received since the handlers were installed (None: none)."""
    return _State.received


@contextlib.contextmanager
def signal_handlers() -> Iterator[None]:
    """SIGINT and SIGTERM raise RunInterrupted inside the block (in the main thread; elsewhere the
    block changes nothing); the previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _State.received = _State.pending = None
    try:
        for sig in SIGNALS:
            if previous[sig] is not signal.SIG_IGN:  # inherited as ignored: the caller's choice
                signal.signal(sig, _handler)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        _State.received = _State.pending = None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A signal arriving inside the block takes effect when the block ends (a result being written
    is written whole)."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
        if not _State.deferring and _State.pending is not None:
            signum, _State.pending = _State.pending, None
            raise RunInterrupted(f"{signal.Signals(signum).name} received", signum)


def check_fit_completed(trainer: Any, what: str, planned_steps: int | None = None) -> None:
    """Raises RunInterrupted unless `trainer`'s last fit ran to its end: not interrupted, no signal
    received, its max_epochs reached and, where given, its planned optimiser steps taken."""
    signum = _State.received
    if signum is not None or getattr(trainer, "interrupted", False):
        cause = f"by {signal.Signals(signum).name}" if signum is not None else "(Lightning reports it interrupted)"
        raise RunInterrupted(f"{what} was interrupted {cause}", signum)
    max_epochs = getattr(trainer, "max_epochs", None)
    max_steps = getattr(trainer, "max_steps", -1)
    if max_steps in (-1, None) and max_epochs not in (None, -1) and trainer.current_epoch < max_epochs:
        raise RunInterrupted(f"{what} stopped after {trainer.current_epoch} of its {max_epochs} epochs")
    if planned_steps is not None and trainer.global_step < planned_steps:
        raise RunInterrupted(f"{what} stopped after {trainer.global_step} of its {planned_steps} steps")


def fit_to_end(trainer: Any, *args: Any, what: str, planned_steps: int | None = None, **kwargs: Any) -> Any:
    """trainer.fit(*args, **kwargs), then check_fit_completed. Newer Lightning releases answer a
    signal during fit with SystemExit(1): that is an interruption too."""
    try:
        result = trainer.fit(*args, **kwargs)
    except SystemExit:
        signum = _State.received
        if signum is not None:
            raise RunInterrupted(f"{what} was interrupted by {signal.Signals(signum).name}", signum) from None
        raise
    check_fit_completed(trainer, what, planned_steps)
    return result


def exits_on_interrupt(prog: str) -> Callable[[F], F]:
    """Decorates a command's main: the signal handlers are installed while it runs, and an
    interruption ends the process with status 128 + the signal and a line that says nothing was
    recorded for the run in progress."""

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with signal_handlers():
                try:
                    return main(*args, **kwargs)
                except KeyboardInterrupt as error:
                    signum = getattr(error, "signum", None) or _State.received
                    code = error.exit_code if isinstance(error, RunInterrupted) else 128 + signal.SIGINT
                    if signum is not None:
                        code = 128 + signum
                    reason = str(error) or "interrupted"
                    print(
                        f"\n{prog}: stopped ({reason}); the run in progress was not recorded as a result",
                        file=sys.stderr,
                        flush=True,
                    )
                    raise SystemExit(code) from None

        return wrapper  # type: ignore[return-value]

    return decorate
