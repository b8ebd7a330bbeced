"""spark-submit entry point of augment (DBA): `spark-submit jobs/augment.py --store URL [--embeddings FP] [...]`.

Arguments are those of `lookalike augment`; the master and resources come from spark-submit.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["augment", *sys.argv[1:]], submitted=True))
