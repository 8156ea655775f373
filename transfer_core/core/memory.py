"""How much memory a run may hold for pictures and cached outputs: its budget. Above it, they live on disk.

The budget is the run's `cache_mb` setting when set; else TRANSFER_STUDIO_MEMORY_MB; else a share of the
machine's memory (MACHINE_SHARE). A share and not everything: a server runs several sessions, the data check
and the network's own activations beside a run, and with no swap (as on our machines) the kernel kills the
largest process when memory runs out. On 24 GB the automatic budget is 2 GB: with the network and Python
(about 1 GB) a run of any size peaks near 3 GB (README, "Large data sets").
"""
from __future__ import annotations

import os

MEMORY_ENV = "TRANSFER_STUDIO_MEMORY_MB"
MACHINE_SHARE = 1 / 12


def machine_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20)
    except (ValueError, OSError, AttributeError):
        return 8192


def memory_budget_mb(setting: int = 0) -> int:
    """The budget in MB for a run whose cache_mb setting is `setting` (0: automatic)."""
    if setting:
        return setting
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env:
        return int(float(env))
    return int(machine_memory_mb() * MACHINE_SHARE)
