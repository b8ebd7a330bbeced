"""spark-submit entry point of the similarity join: `spark-submit jobs/similarity_join.py --store URL --index NAME
--query-embeddings FP [...]`.

Arguments are those of `lookalike join`; the master and resources come from spark-submit.
"""

import sys

from lookalike.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["join", *sys.argv[1:]], submitted=True))
