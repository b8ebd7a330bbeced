"""Options defined once: a config field declares its default and help, and the command line's flags and the docs'
command-line and Python references are made from that one definition."""

import dataclasses

import pytest

from lookalike.batch.join_config import JoinConfig
from lookalike.cli.embed import EMBEDDING_OPTIONS
from lookalike.cli.index import INDEX_BUILD_OPTIONS
from lookalike.cli.join import JOIN_OPTIONS
from lookalike.cli.main import build_parser
from lookalike.core.options import flag_of, help_of, option_spec
from lookalike.dev.docs import cli_reference, python_reference
from lookalike.embed.config import EmbedConfig
from lookalike.index.config import BuildIndexConfig

DECLARED = [
    *[(EmbedConfig, name, command) for name in EMBEDDING_OPTIONS for command in ("embed", "reindex")],
    *[(BuildIndexConfig, name, command) for name in INDEX_BUILD_OPTIONS for command in ("build-index", "reindex")],
    *[(JoinConfig, name, "join") for name in JOIN_OPTIONS],
]


def command_parser(name: str):
    [sub] = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices[name]


@pytest.mark.parametrize(("config", "name", "command"), DECLARED,
                         ids=[f"{c}:{n}" for _, n, c in DECLARED])
def test_each_flag_is_its_config_field(config, name, command):
    field = {f.name: f for f in dataclasses.fields(config)}[name]
    [action] = [a for a in command_parser(command)._actions if flag_of(config, name) in a.option_strings]
    assert action.dest == name and action.default == field.default
    assert action.help.startswith(help_of(field))
    if field.default not in (None, False):  # the flag reads a value as the field's type
        assert action.type(str(field.default)) == field.default


def test_the_docs_references_are_made_from_the_same_definitions():
    cli, python = " ".join(cli_reference().split()), " ".join(python_reference().split())
    for config, name, _ in DECLARED:
        words = " ".join(option_spec(config, name).help.split()).replace("|", "\\|")
        assert f"`{flag_of(config, name)}" in cli and words in cli, name
        if config in (EmbedConfig, JoinConfig):  # the Python API's config tables: the field's help is its meaning
            assert words in python, name
