"""spark-submit entry point of the shard export: `spark-submit jobs/export_shards.py --store URL --index NAME
--dest URL [--dest URL ...]`.

Arguments are those of `lookalike export`; the master and resources come from spark-submit.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]], submitted=True))
