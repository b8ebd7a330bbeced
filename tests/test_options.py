"""Options defined once: a config field declares its default and help, and the command line's flags and the docs'
command-line and Python references are made from that one definition."""

import dataclasses

import pytest

from lookalike.batch.join_config import JoinConfig
from lookalike.cli.embed import EMBEDDING_OPTIONS
from lookalike.cli.export import ROUTER_OPTIONS
from lookalike.cli.index import INDEX_BUILD_OPTIONS
from lookalike.cli.join import JOIN_OPTIONS
from lookalike.cli.main import build_parser
from lookalike.cli.query import API_OPTIONS, LIMIT_OPTIONS, WORKER_OPTIONS
from lookalike.cli.train import TRAIN_OPTIONS, TRAINING_DATA_OPTIONS
from lookalike.core.options import flag_of, help_of, option_spec
from lookalike.dev.docs import cli_reference, python_reference
from lookalike.embed.config import EmbedConfig
from lookalike.index.config import BuildIndexConfig
from lookalike.retrieval.limits import QueryLimits
from lookalike.serve.settings import ApiSettings, RouterSettings, WorkerSettings
from lookalike.training.config import TrainConfig, TrainingDataConfig

DECLARED = [
    *[(EmbedConfig, name, command) for name in EMBEDDING_OPTIONS for command in ("embed", "reindex")],
    *[(BuildIndexConfig, name, command) for name in INDEX_BUILD_OPTIONS for command in ("build-index", "reindex")],
    *[(JoinConfig, name, "join") for name in JOIN_OPTIONS],
    *[(WorkerSettings, name, "serve") for name in WORKER_OPTIONS],
    *[(ApiSettings, name, "serve") for name in API_OPTIONS],
    *[(QueryLimits, name, "serve") for name in LIMIT_OPTIONS],
    *[(RouterSettings, name, "route") for name in ROUTER_OPTIONS],
    *[(TrainConfig, name, "train") for name in TRAIN_OPTIONS],
    *[(TrainingDataConfig, name, "train-data") for name in TRAINING_DATA_OPTIONS],
]

# Flags that several commands take with a meaning of their own there (what --json prints, what a batch is, which
# embeddings version): each is defined once per meaning. Any other flag means the same in every command that takes
# it, so it must be the same definition everywhere.
MEANS_PER_COMMAND = {"--json", "--batch-size", "--embeddings", "--expand", "--expand-alpha", "--images", "--index",
                     "--name", "--k", "--model", "--image-size", "--no-verify", "--port", "--queries", "--run-id",
                     "--seed", "--space", "--token-file", "--max-body-bytes", "--training-set"}


def command_parser(name: str):
    [sub] = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices[name]


@pytest.mark.parametrize(("config", "name", "command"), DECLARED,
                         ids=[f"{c}:{n}" for _, n, c in DECLARED])
def test_each_flag_is_its_config_field(config, name, command):
    field = {f.name: f for f in dataclasses.fields(config)}[name]
    [action] = [a for a in command_parser(command)._actions if flag_of(config, name) in a.option_strings]
    assert action.dest == name and action.help.startswith(help_of(field))
    if option_spec(config, name).repeatable:  # one value per use of the flag, made a tuple for the field
        assert action.default == [] and field.default == () and action.nargs is None
    else:
        assert action.default == field.default
    if not isinstance(field.default, bool | tuple) and field.default is not None:  # read as the field's type
        assert action.type(str(field.default)) == field.default


def test_a_flag_several_commands_take_is_one_definition():
    [sub] = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    seen: dict[str, dict[str, tuple]] = {}
    for command, parser in sub.choices.items():
        for action in parser._actions:
            for flag in action.option_strings:
                seen.setdefault(flag, {})[command] = (action.dest, repr(action.default), action.help, action.type)
    differing = {flag: by for flag, by in seen.items() if len(set(by.values())) > 1 and flag not in MEANS_PER_COMMAND}
    assert not differing, f"flags defined differently in different commands: {sorted(differing)}"
    # the list above is only what still differs: a flag made one definition leaves it
    assert not {flag for flag in MEANS_PER_COMMAND if len(set(seen[flag].values())) == 1}


def test_deprecated_names_of_the_training_set_still_read():
    parser = build_parser()
    assert parser.parse_args(["train-data", "--store", "s", "--name", "logos"]).name == "logos"
    args = parser.parse_args(["train", "--store", "s", "--run-id", "r", "--data", "logos", "--no-augment"])
    assert (args.data, args.augment) == ("logos", False)


def test_the_docs_references_are_made_from_the_same_definitions():
    cli, python = " ".join(cli_reference().split()), " ".join(python_reference().split())
    for config, name, _ in DECLARED:
        words = " ".join(option_spec(config, name).help.split()).replace("|", "\\|")
        assert f"`{flag_of(config, name)}" in cli and words in cli, name
        if config in (EmbedConfig, JoinConfig):  # the Python API's config tables: the field's help is its meaning
            assert words in python, name
