"""Benchmarks: speed targets measured against the real embedded stack (`python -m bench`)."""
