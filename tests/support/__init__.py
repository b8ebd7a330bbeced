"""What the tests share besides their fixtures (those are in conftest.py): servers, a Spark cluster,
command-line helpers, the serving stack."""
