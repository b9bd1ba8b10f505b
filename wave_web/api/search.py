"""Search (api-v1.md §10)."""
