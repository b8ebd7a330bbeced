"""The one query path: queries in, hits out (embed query, search, filter); the home of re-ranking and verification."""
