"""Procedurally rendered power-line inspection flights with geotags and ground truth."""
