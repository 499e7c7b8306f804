"""Label Studio projects, pre-annotated tasks, webhooks and export (issue 7 onwards)."""
