"""ErasureWorkflow: a session's deletion, or every session of a subject (docs/api.md,
Deleting and erasing)."""
