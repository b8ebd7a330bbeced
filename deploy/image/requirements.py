"""Print the requirements the container image installs in its dependency layer, one per line.

They come from pyproject.toml (the package's own list, plus the extras named on the command line), so the
image, the tests and `pip install lookalike` never disagree; deploy/constraints.txt pins them. Runs on the
image's Python before anything else is installed: standard library only.

    python deploy/image/requirements.py [EXTRA ...] > requirements.txt
"""

import sys
from pathlib import Path

import tomllib


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    unknown = sorted(set(extras) - set(project.get("optional-dependencies", {})))
    if unknown:
        raise SystemExit(f"no such extra in {pyproject}: {', '.join(unknown)}")
    return [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]


if __name__ == "__main__":
    print("\n".join(requirements(Path(__file__).resolve().parents[2] / "pyproject.toml", sys.argv[1:])))
