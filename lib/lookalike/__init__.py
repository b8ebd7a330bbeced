"""Content-based image retrieval at catalogue scale, as batch jobs on Apache Spark."""
__version__ = "0.1.0"
