"""Tests of the framework integrations against the real frameworks (a package, so its helpers do not
shadow tests/conftest.py)."""
