"""What the benches share: embedding recipes and their judging (recipes), memory measurement (memory), synthetic
versions and indexes (synthetic_index, one_query_index), and the one way a bench records its figures (record).
The scripts beside this package import it as they run (`python bench/NAME.py` puts bench/ on the path)."""
