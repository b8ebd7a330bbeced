"""spark-submit entry point of the embed job: `spark-submit jobs/embed.py --images URL --store URL [...]`.

Arguments are those of `lookalike embed`; the master and resources come from spark-submit. Prints the
manifest summary (or the manifest with --json).
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]], submitted=True))
