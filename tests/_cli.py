"""Running the CLI in-process (typer's CliRunner) and the one-line-error contract, shared by the CLI tests."""

from typer.testing import CliRunner

from gradscope import cli

runner = CliRunner()


def run(*args):
    """``gradscope ARGS…`` in this process; arguments are converted to strings (paths, numbers)."""
    return runner.invoke(cli.app, [str(a) for a in args])


def assert_error(res, *needles):
    """Exit code 2, one line 'error: …' on stderr naming each needle, no traceback; returns the line."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
