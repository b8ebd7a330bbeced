"""spark-submit entry point of the nightly reindex: `spark-submit jobs/reindex.py --images URL --store URL
--name NAME [...]` (or `deploy/submit.sh reindex ...`).

Arguments are those of `lookalike reindex`; the master and resources come from spark-submit. Prints the run
summary (or the report with --json); exits 2 with a message when another run holds the index's lease.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reindex", *sys.argv[1:]], submitted=True))
