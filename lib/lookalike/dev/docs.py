"""The documentation site's generated parts, made from the code when the site is built: the command-line reference
from the argparse parsers, the HTTP references from the worker's and the router's OpenAPI schemas, the Python API
from its signatures and docstrings, and the exit codes from the one error tree. mkdocs.yml names this module as a
hook: each `<!-- generated: NAME -->` line of a page is replaced by its part, so none of it is written by hand."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lookalike.core.options import help_of

MARKER = re.compile(r"^<!-- generated: ([a-z_-]+) -->$", re.MULTILINE)


def cli_reference() -> str:
    from lookalike.cli.main import COMMANDS, build_parser
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = ["Every command takes the global options before its name: `lookalike [GLOBAL OPTIONS] COMMAND ...`.", "",
           _options_table(parser), ""]
    for command in COMMANDS:
        p = sub.choices[command.name]
        usage = p.format_usage().removeprefix("usage: ").strip()
        out += [f"## lookalike {command.name}", "", command.help[0].upper() + command.help[1:] + ".", "",
                "```text", usage, "```", ""]
        if command.submittable:
            out += [f"Also a spark-submit job: `spark-submit \"$(python -m lookalike.jobs "
                    f"{_job_of(command.name)})\" ARGS`, with the master and resources of spark-submit.", ""]
        out += [_options_table(p), ""]
    return "\n".join(out)


def _job_of(command: str) -> str:
    return {"join": "similarity_join", "export": "export_shards"}.get(command, command.replace("-", "_"))


def _options_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| option | default | what it does |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            name = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}`"
        default = "" if action.default in (None, False, [], (), argparse.SUPPRESS) or action.required else \
            f"`{action.default}`"
        if action.required:
            default = "required"
        text = (action.help or "").replace("%%", "%")
        if action.choices and not isinstance(action.choices, dict):
            text = text.rstrip(".") + f". One of: {', '.join(f'`{c}`' for c in action.choices)}."
        rows.append(f"| {name} | {default} | {_cell(text)} |")
    return "\n".join(rows)


def http_reference(which: str) -> str:
    """The schema a worker (`worker`) or a router (`router`) serves at /openapi.json, as tables."""
    schema = _worker_schema() if which == "worker" else _router_schema()
    components = schema.get("components", {}).get("schemas", {})
    out = [f"`{schema['info']['title']}` {schema['info']['version']}: {schema['info'].get('description', '')}", ""]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            out += [f"### `{method.upper()} {path}`", "", (op.get("summary") or "").capitalize(), ""]
            body = op.get("requestBody", {}).get("content", {})
            for kind, content in body.items():
                out += [f"Body ({kind}):", "", _model_table(_resolve(content["schema"], components), components), ""]
            params = [p for p in op.get("parameters", [])]
            if params:
                out += ["| parameter | in | type | description |", "| --- | --- | --- | --- |"]
                out += [f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}), components)} | "
                        f"{_cell(p.get('description', ''))} |" for p in params]
                out.append("")
            responses = op.get("responses", {})
            out += ["| status | meaning |", "| --- | --- |"]
            out += [f"| {code} | {_cell(r.get('description', ''))} |" for code, r in responses.items()]
            out.append("")
    return "\n".join(out)


def _worker_schema() -> dict[str, Any]:
    from lookalike.core.store import Store
    from lookalike.serve.context import ApiSettings
    from lookalike.serve.http_api import create_app
    from lookalike.serve.schema import served_schema
    from lookalike.serve.worker import ServedIndex, WorkerSettings
    with tempfile.TemporaryDirectory() as tmp:
        served = ServedIndex(Store(tmp), WorkerSettings("index", tmp))
        app = create_app(served)
        return served_schema(app.openapi(), None, ApiSettings(), None)


def _router_schema() -> dict[str, Any]:
    from lookalike.serve.router import RouterSettings, create_router
    return create_router(RouterSettings(("http://shard-0:8000",))).openapi()


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _model_table(model: dict[str, Any], components: dict[str, Any]) -> str:
    required = set(model.get("required", []))
    rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.get("properties", {}).items():
        field = _resolve(field, components)
        default = "required" if name in required else ("" if field.get("default") is None else
                                                       f"`{field['default']}`")
        description = field.get("description", "")
        if "enum" in field and len(field["enum"]) <= 12:
            description = description.rstrip(".") + ". One of: " + ", ".join(f"`{v}`" for v in field["enum"])
        rows.append(f"| `{name}` | {_type(field, components)} | {default} | {_cell(description)} |")
    return "\n".join(rows)


def _type(field: dict[str, Any], components: dict[str, Any]) -> str:
    field = _resolve(field, components)
    if "anyOf" in field:
        kinds = [_type(f, components) for f in field["anyOf"] if f.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds)) or "null"
    kind = field.get("type", "object")
    if kind == "array":
        return f"list of {_type(field.get('items', {}), components)}"
    bounds = [f"{name} {field[key]}" for key, name in (("minimum", "≥"), ("exclusiveMinimum", ">"),
                                                      ("maximum", "≤"), ("maxItems", "at most"))
              if key in field]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def python_reference() -> str:
    import lookalike
    out = []
    for name in lookalike.__all__:
        if name == "__version__":
            continue
        obj = getattr(lookalike, name)
        out += [f"### `lookalike.{name}`", ""]
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            out += [_doc(obj), ""]
        elif dataclasses.is_dataclass(obj):
            out += [_doc(obj), "", "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
            meanings = _field_comments(obj)
            for field in dataclasses.fields(obj):
                default = "required" if field.default is dataclasses.MISSING and \
                    field.default_factory is dataclasses.MISSING else \
                    f"`{field.default!r}`" if field.default is not dataclasses.MISSING else "(made fresh)"
                meaning = help_of(field) or meanings.get(field.name, "")  # an option's help, else its comment
                out.append(f"| `{field.name}` | `{_cell(str(field.type))}` | {_cell(default)} | {_cell(meaning)} |")
            out += ["", *(f"- `{m}{_signature(v)}`: {_doc(v)}" for m, v in _methods(obj)), ""]
        elif inspect.isclass(obj):
            out += ["```python", f"{name}{_signature(obj)}", "```", "", _doc(obj), ""]
            for member, value in inspect.getmembers(obj):
                if isinstance(value, property) and not member.startswith("_"):
                    out.append(f"- `{member}`: {_doc(value)}")
            out += [f"- `{m}{_signature(v)}`: {_doc(v)}" for m, v in _methods(obj)]
            out.append("")
        else:
            out += ["```python", f"{name}{_signature(obj)}", "```", "", _doc(obj), ""]
    return "\n".join(out)


def _field_comments(cls: type) -> dict[str, str]:
    """The comment at the end of each field's line in the class's source: what the field means."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, re.MULTILINE))


def _methods(cls: type) -> list[tuple[str, Any]]:
    """The class's own public methods (classmethods included), in source order."""
    own = [(m, v) for m, v in vars(cls).items() if not m.startswith("_")]
    return [(m, getattr(cls, m)) for m, v in own if callable(v) or isinstance(v, classmethod | staticmethod)]


def _signature(obj: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj: Any) -> str:
    """The docstring, not a dataclass's generated one (which only repeats the signature)."""
    text = inspect.cleandoc(obj.__doc__ or "")
    if dataclasses.is_dataclass(obj) and text.startswith(f"{obj.__name__}("):
        return ""
    return text


def exit_codes() -> str:
    from lookalike.core.errors import EXIT_CODES
    return "\n".join(["| code | meaning |", "| --- | --- |",
                      *(f"| {code} | {_cell(meaning)} |" for code, meaning in EXIT_CODES.items())])


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


BENCH_RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def bench_table(bench: str) -> str:
    """The table of a bench's newest committed record (bench/results/BENCH-*.json), with where it came from."""
    paths = sorted(BENCH_RESULTS.glob(f"{bench}-[0-9]*.json"))  # stamps start with a digit, names never do
    if not paths:
        raise FileNotFoundError(f"no record of bench {bench!r} in {BENCH_RESULTS}: run its script with --out "
                                "bench/results and commit the record")
    r = json.loads(paths[-1].read_text())
    m = r["machine"]
    command = " ".join(["python", r.get("script", f"bench/{r['bench']}.py"), *r["argv"]])
    return (f"{r['table']}\n\n*Recorded by `{command}` on {r['date'][:10]}, code {r['code_version']}; "
            f"{m['cpu'] or m['system']}, {m['cores_available']} of {m['cores']} cores, {m['memory_gib']} GiB "
            f"(`{paths[-1].relative_to(BENCH_RESULTS.parents[1])}`).*")


GENERATED: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "http-worker": lambda: http_reference("worker"),
    "http-router": lambda: http_reference("router"),
    "python-api": python_reference,
    "exit-codes": exit_codes,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The MkDocs hook: each marker line replaced by its generated part."""
    def part(match: re.Match[str]) -> str:
        if match.group(1).startswith("bench-"):
            return bench_table(match.group(1).removeprefix("bench-"))
        if match.group(1) not in GENERATED:
            raise KeyError(f"{page.file.src_path}: no generated part {match.group(1)!r} (known: {sorted(GENERATED)})")
        return GENERATED[match.group(1)]()
    return MARKER.sub(part, markdown)
