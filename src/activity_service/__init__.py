"""Activity ingest service: HTTP -> Kafka -> MongoDB."""

__version__ = "0.1.0"
