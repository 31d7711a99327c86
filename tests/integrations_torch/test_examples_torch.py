"""The torch tier's examples in examples/integrations/ run (the cases are listed in the default tier)."""

from __future__ import annotations

from pathlib import Path

import pytest
from integrations.test_examples import CASES, run_example


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[0] == "torch"])
def test_a_torch_tier_example_runs(name: str, tmp_path: Path) -> None:
    run_example(name, tmp_path)
