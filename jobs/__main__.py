"""`python -m lookalike.jobs JOB`: the path of a job's entry point, for spark-submit (no JOB: the jobs there are)."""

import sys
from pathlib import Path

here = Path(__file__).resolve().parent
jobs = sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))
if len(sys.argv) != 2 or sys.argv[1].replace("-", "_") not in jobs:
    print(f"usage: python -m lookalike.jobs JOB, one of: {', '.join(jobs)}", file=sys.stderr)
    sys.exit(2)
print(here / f"{sys.argv[1].replace('-', '_')}.py")
