"""Ingest, database, HTTP API, model registry and continual learning (later issues)."""
