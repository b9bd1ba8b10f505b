"""Resilience tests: load and faults (issue 14 items 4 and 5)."""
