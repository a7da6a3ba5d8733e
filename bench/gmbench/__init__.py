"""Gristmill's whole-job benchmark harness (see bench/README.md)."""
