"""The limits every image is read and decoded under (defaults of the job configs and the query worker)."""

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PIXELS = 64_000_000  # a 8000×8000 photo passes; a decompression bomb does not
