"""sfrik-compare run as its command line, on the cpu protocol in a stand-in checkout (the tests of
its command line and of its runs share it)."""

from sfrik_experiments.compare import cli


def compare(checkout, out, methods, *options, overrides=()):
    """sfrik-compare on the cpu protocol in the stand-in checkout; overrides go after `--`."""
    argv = ["--solo-learn-dir", str(checkout), "--protocol", "cpu", "--methods", *methods, "--out", str(out)]
    cli.main([*argv, *options, *(["--", *overrides] if overrides else [])])
