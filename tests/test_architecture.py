"""The architecture holds: no import cycles (imports inside functions count), the library never imports the
spark-submit entry points, the torch-free lists of backbones and poolings name what model/ builds, and every
error the CLI reports comes from one tree."""

import ast
import inspect
from pathlib import Path

import grimp

import lookalike
from lookalike.core import errors as errors_module
from lookalike.core.errors import LookalikeError

LIB = Path(lookalike.__file__).parent


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that import each other."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def test_no_import_cycles_even_through_imports_inside_functions():
    graph = grimp.build_graph("lookalike")
    assert _strongly_connected({m: graph.find_modules_directly_imported_by(m) for m in graph.modules}) == []
    # grimp sees deferred imports: the query worker's deferred loading of a model is in the graph.
    assert "lookalike.embed.job" in graph.find_modules_directly_imported_by("lookalike.cli.embed")


def test_a_cycle_is_found_when_there_is_one():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_spark_submit_entry_points():
    offenders = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(LIB)}: {n}" for n in names if n == "jobs" or n.startswith("jobs.")]
    assert offenders == []


def test_the_torch_free_model_names_are_what_model_builds():
    from lookalike.model.backbones import BACKBONES
    from lookalike.model.pooling import make_pooling
    from lookalike.model.spec import BACKBONE_NAMES, POOLINGS
    assert sorted(BACKBONES) == sorted(BACKBONE_NAMES)
    for name in POOLINGS:
        make_pooling(name)


def test_every_error_raised_on_purpose_is_a_lookalike_error():
    """Classes named *Error, *Held, *Lost ... defined anywhere in the library derive from the one tree."""
    import importlib
    found = []
    for path in LIB.rglob("*.py"):
        module = ".".join(("lookalike", *path.relative_to(LIB).with_suffix("").parts)).removesuffix(".__init__")
        if module.endswith("__main__"):
            continue
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if cls.__module__ == module and issubclass(cls, BaseException):
                found.append(cls)
    assert len(found) > 15
    assert [c.__qualname__ for c in found if not issubclass(c, LookalikeError)] == []
    assert {c.exit_code for c in found} <= set(errors_module.EXIT_CODES) - {0, errors_module.EXIT_BUG}
