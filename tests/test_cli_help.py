"""The help a new user reads: words instead of raw type names, one meaning per short option, an example in
every command's help, and `reproduce --list` citing papers (never files)."""

import json
import re

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from gradscope import cli

runner = CliRunner()

#: what typer/click print for a parameter without a metavar
RAW_TYPES = re.compile(
    r"<(bool|boolean|str|text|int|integer|float|path|file|filename|int range|float range|list\[[^\]]*\])>"
    r"|\{[a-z_]+\}|\b(INTEGER|FLOAT|TEXT|BOOLEAN)\b|\bRANGE\b"
)


def _group():
    return typer.main.get_command(cli.app)


def _commands() -> dict:
    group = _group()
    assert isinstance(group, TyperGroup)
    return dict(group.commands)


def _help(*args: str) -> str:
    res = runner.invoke(cli.app, [*args, "--help"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    assert res.exit_code == 0, res.output
    return res.stdout


def test_the_command_list_is_every_group_s_commands():
    registered = [c.__name__.replace("_", "-") for g in cli.GROUPS for c in g.COMMANDS]
    assert sorted(registered) == sorted(_commands())


@pytest.mark.parametrize("command", [None, *sorted(_commands())])
def test_help_names_values_in_words(command):
    text = _help(*([command] if command else []))
    bad = sorted({m.group(0) for m in RAW_TYPES.finditer(text)})
    assert not bad, f"gradscope {command or ''} --help shows raw type names {bad}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_s_help_has_an_example(command):
    assert "Example" in _help(command)


def test_the_pattern_catches_what_typer_prints_without_a_metavar():
    """The check above can fail: typer's own rendering of an unlabelled option is caught."""
    app = typer.Typer(rich_markup_mode="markdown")

    @app.command()
    def f(n: int = typer.Option(1, "--n", min=1), flag: bool = typer.Option(False, "--flag")) -> None:
        """Nothing."""

    res = runner.invoke(app, ["--help"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    assert RAW_TYPES.search(res.stdout), res.stdout


def test_one_meaning_per_short_option():
    """Every short option stands for one long option in every command; -o is --out, always a folder."""
    meaning: dict[str, set] = {}
    out_metavars = set()
    for name, command in _commands().items():
        for p in command.params:
            longs = [o for o in p.opts + p.secondary_opts if o.startswith("--")]
            shorts = [o for o in p.opts + p.secondary_opts if re.fullmatch(r"-[A-Za-z]", o)]
            for s in shorts:
                meaning.setdefault(s, set()).add(longs[0] if longs else p.name)
            if "--out" in longs:
                out_metavars.add(p.metavar)
    clash = {s: sorted(v) for s, v in meaning.items() if len(v) > 1}
    assert not clash, clash
    assert meaning["-o"] == {"--out"}
    assert out_metavars == {"DIR"}  # a folder in every command's help


def test_reproduce_list_cites_papers_and_no_files():
    res = runner.invoke(cli.app, ["reproduce", "--list"], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    assert res.exit_code == 0, res.output
    for needle in ("/work", "shared/", ".md", "DESIGN"):
        assert needle not in res.stdout, needle
    rows = json.loads(runner.invoke(cli.app, ["reproduce", "--list", "--json"]).stdout)
    assert rows
    cite = re.compile(
        r"[A-Z][A-Za-z\u00C0-\u017F-]+( et al\.| & [A-Z][A-Za-z-]+|, [A-Z][A-Za-z-]+ & [A-Z][A-Za-z-]+)? (19|20)\d\d"
    )
    for r in rows:
        assert cite.search(r["source"]), r
        for needle in ("/work", "shared/", ".md"):
            assert needle not in json.dumps(r), (needle, r)
