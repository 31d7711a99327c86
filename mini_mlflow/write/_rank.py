"""Write path: this process's global rank, as distributed launchers announce it (0 when none does)."""

from __future__ import annotations

import os

#: Variables that launchers set for the global rank, in the order Lightning reads them
#: (torchrun/DDP, SLURM, LSF's jsrun); ``LOCAL_RANK`` last, for launchers that set only it.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK")


def global_rank() -> int:
    """The global rank from the first of ``RANK_VARIABLES`` that holds an integer; 0 without one."""
    for name in RANK_VARIABLES:
        text = os.environ.get(name, "").strip()
        if text:
            try:
                return int(text)
            except ValueError:
                continue
    return 0
