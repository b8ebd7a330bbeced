"""The one way a bench records its figures: `--out DIR` writes one JSON file per run, with the bench's name, the
code version, the date, the machine, the command line and the figures. bench/results/ holds the committed records;
the docs' tables are made from them when the site is built (lookalike.dev.docs), never copied by hand."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from lookalike.core.cpus import available_cpus
from lookalike.core.manifest import code_version, utc_now

RESULTS = Path(__file__).resolve().parents[1] / "results"


def add_out_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help=f"record the figures as JSON in DIR (the committed records: {RESULTS.relative_to(Path.cwd())}"
                        if RESULTS.is_relative_to(Path.cwd()) else "record the figures as JSON in DIR")


def record(args: argparse.Namespace, figures: Any, table: str | None = None, bench: str | None = None) -> Path | None:
    """Write the run's record under args.out (nothing without --out); returns its path. `table`: the figures as
    the docs show them (a Markdown table), which the docs include from the committed record. `bench`: the record's
    name when one script records several kinds of run (default: the script's)."""
    if getattr(args, "out", None) is None:
        return None
    name = bench or Path(sys.argv[0]).stem
    stamp = utc_now().replace(":", "").replace("-", "")
    path = Path(args.out) / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": name, "script": f"bench/{Path(sys.argv[0]).name}",
                                "code_version": code_version(), "date": utc_now(), "machine": machine(),
                                "argv": sys.argv[1:], "figures": figures, "table": table},
                               indent=2, default=str) + "\n")
    print(f"recorded {path}", file=sys.stderr)
    return path


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        mem_kib = 0
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "cores_available": available_cpus(),
            "memory_gib": round(mem_kib / 2**20, 1), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.machine()}"}
