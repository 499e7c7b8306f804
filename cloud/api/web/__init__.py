"""The operators' pages, served by the cloud app (cloud/api/web/pages.py)."""
