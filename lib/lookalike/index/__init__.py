"""Faiss indexes: choose, train, add, merge, measure recall, publish, read, search, and export shards."""
