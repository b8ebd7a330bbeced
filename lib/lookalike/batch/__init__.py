"""Batch work over an index or embeddings: similarity joins, near-duplicate clusters, evaluation and its metrics."""
