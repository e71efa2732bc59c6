"""Benchmarks of escalation-sync against the bundled simulators (not part of the test suite)."""
