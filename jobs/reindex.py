"""spark-submit entry point of the nightly reindex: `spark-submit jobs/reindex.py --images URL --store URL
--index NAME [...]` (or `deploy/submit.sh reindex ...`).

Arguments are those of `lookalike reindex`; the master and resources come from spark-submit. Prints the run
summary (or the report with --json); exits with the codes of `lookalike --help` (75: another run holds the
index's lease, nothing was done; 3: the run refused its result and says how to rerun; 143: stopped by SIGTERM,
lease released, a rerun resumes).
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reindex", *sys.argv[1:]], submitted=True))
