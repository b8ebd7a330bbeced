"""The command line as a user meets it: help that speaks to them, every flag explained with its default, one name
for the index in every command (the old one still accepted), a version, and the exit codes listed once."""

import argparse
import subprocess
import sys

import pytest

from lookalike import __version__
from lookalike.cli.main import COMMANDS, build_parser, main
from lookalike.core.errors import EXIT_CODES


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("submitted", [False, True])
def test_every_flag_of_every_command_has_a_help_line_that_shows_its_default(submitted):
    for name, parser in subcommands(build_parser(submitted)).items():
        text = parser.format_help()
        for action in options(parser):
            flag = action.option_strings[0]
            assert action.help and action.help.strip(), f"lookalike {name} {flag} has no help line"
            shown = parser._get_formatter()._get_help_string(action) % {"default": action.default}
            takes_value = action.nargs != 0
            if takes_value and not action.required and action.default not in (None, [], ()):
                assert "default" in shown.lower(), f"lookalike {name} {flag}: its default is not shown: {shown!r}"
        assert "exit codes:" in text and all(f"  {code:<3} " in text for code in EXIT_CODES)


def test_the_index_is_named_by_index_in_every_command_and_name_still_works():
    named = {}
    for name, parser in subcommands(build_parser()).items():
        for action in options(parser):
            if action.dest == "index":
                named[name] = action.option_strings
    assert set(named) == {"reindex", "build-index", "search", "explain", "serve", "join", "export", "indexes",
                          "publish", "errors", "evaluate", "status"}
    assert all(flags == ["--index", "--name"] for flags in named.values()), named
    parser = build_parser()
    for flag in ("--index", "--name"):
        args = parser.parse_args(["search", "--store", "s", flag, "marks", "--version", "v1", "q.png"])
        assert (args.index, args.version) == ("marks", "v1")
    joined = parser.parse_args(["join", "--store", "s", "--name", "marks", "--index-version", "v2", "--self-join"])
    assert (joined.index, joined.version) == ("marks", "v2")


def test_version_and_the_top_level_help_speak_to_a_user(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lookalike {__version__}"
    text = build_parser().format_help()
    assert "Index a folder of images and search it:" in text and "lookalike reindex --images" in text
    assert all(c.name in text for c in COMMANDS)
    assert "module" not in text.lower() and "wires" not in text  # no word to the developers of the command


def test_the_command_starts_without_loading_torch_faiss_or_spark():
    code = ("import sys; from lookalike.cli.main import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'faiss', 'pyspark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cli_reference_of_the_docs_is_made_from_the_same_parsers():
    from lookalike.dev.docs import cli_reference, exit_codes
    text = cli_reference()
    for name, parser in subcommands(build_parser()).items():
        assert f"## lookalike {name}" in text
        assert all(f"`{action.option_strings[0]}" in text for action in options(parser)), name
    assert all(f"| {code} | " in exit_codes() for code in EXIT_CODES)


def test_every_bench_table_of_the_docs_comes_from_a_committed_record():
    from lookalike.dev.docs import BENCH_RESULTS, MARKER, bench_table
    root = BENCH_RESULTS.parents[1]
    named = {m.group(1).removeprefix("bench-") for page in (root / "docs").rglob("*.md")
             for m in MARKER.finditer(page.read_text()) if m.group(1).startswith("bench-")}
    assert len(named) >= 10
    for bench in named:
        text = bench_table(bench)
        script = text.split("*Recorded by `python ")[1].split()[0]
        assert text.startswith("|") and (root / script).exists(), bench
