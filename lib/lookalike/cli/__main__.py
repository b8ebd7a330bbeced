"""`python -m lookalike.cli`: the same as the `lookalike` command."""

import sys

from lookalike.cli.main import main

sys.exit(main())
