"""The `lookalike` command: argument parsing only, one module per command group, shared flags in args. Command
modules import the library inside their run functions, so `lookalike --help` and the light commands start without
loading torch, faiss or Spark."""
