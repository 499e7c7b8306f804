"""The operators' pages, served by the cloud app (cloud/web/pages.py)."""
