"""spark-submit entry point of build_index: `spark-submit jobs/build_index.py --store URL --index NAME [...]`.

Arguments are those of `lookalike build-index`; the master and resources come from spark-submit.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["build-index", *sys.argv[1:]], submitted=True))
