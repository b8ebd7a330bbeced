"""Print the requirements the container image installs in its dependency layer, one per line: lookalike's
and what builds lookalike itself (its build-system requires), since the code layer builds offline.

They come from pyproject.toml (the package's own list, plus the extras named on the command line), so the
image, the tests and `pip install lookalike` never disagree; deploy/constraints.txt pins them. Runs on the
image's Python before anything else is installed: standard library only.

    python deploy/image/requirements.py [EXTRA ...] > requirements.txt
"""

import sys
from pathlib import Path

import tomllib


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    config = tomllib.loads(pyproject.read_text())
    project = config["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"no such extra in {pyproject}: {', '.join(unknown)}")
    out: list[str] = [*project["dependencies"], *config.get("build-system", {}).get("requires", [])]
    todo, seen = list(extras), set()
    while todo:  # an extra may name others of the project's own (all = lookalike[spark,serve,...])
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            own = requirement.replace(" ", "")
            if own.startswith(f"{project['name']}[") and own.endswith("]"):
                todo += own[len(project["name"]) + 1:-1].split(",")
            elif requirement not in out:
                out.append(requirement)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(Path(__file__).resolve().parents[2] / "pyproject.toml", sys.argv[1:])))
