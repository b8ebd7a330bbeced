"""The Python API: what `import lookalike` offers (the command line is built on it). `lookalike/__init__.py` names
each public object; this package holds them, one module per kind of use."""
