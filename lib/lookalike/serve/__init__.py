"""Query workers: what a worker serves and how it swaps versions, its HTTP API, and the fan-out router."""
