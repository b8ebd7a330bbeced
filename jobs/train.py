"""spark-submit entry point of training: `spark-submit jobs/train.py --store URL --run-id ID [--gpu ...]`.

Arguments are those of `lookalike train`; the master and resources come from spark-submit.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], submitted=True))
