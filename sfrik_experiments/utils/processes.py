"""Worker processes of the distributed tests and benchmarks: a rendezvous port and a clean exit."""


def free_port() -> int:
    """A free TCP port on localhost for a process group's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_without_teardown() -> None:
    """Ends a spawned worker whose work is done (process group destroyed) with status 0, skipping
    the interpreter's teardown: on this torch about one run in ten aborted there ("terminate called
    without an active exception", no Python frame left) after a clean destroy_process_group, a
    gloo/c10d shutdown race."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
