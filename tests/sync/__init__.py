"""Tests of sync to a real MLflow server and of export/import (a package, so its conftest does not shadow tests/conftest.py)."""
