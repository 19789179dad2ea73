"""train.reuse_freed_memory: glibc keeps freed memory for the next step (engine/memory.py)."""

import platform
import subprocess
import sys

import pytest
import torch

from tests.conftest import tiny_train_config

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate and touch 256 MB and free it, twelve times, as training steps do: how many of the
# last eleven allocations faulted in fresh pages (more than half as many faults as the first)?
# Printed by a fresh process (the setting is process-wide). With reuse, glibc's heap still
# grows once or twice while its layout settles (a small block allocated just past a freed
# one keeps the two apart until it is freed too, so the next request cannot fit there); when
# that happens varies between machines, so the test counts fresh allocations rather than
# looking at fixed steps.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "reuse":
    from sjdl.engine.memory import reuse_freed_memory
    assert reuse_freed_memory()
def faults(n=64 * 2**20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(n).fill_(1.0)
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
counts = [faults() for _ in range(12)]
print(sum(c > counts[0] / 2 for c in counts[1:]))
"""


def _fresh_allocations(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_freed_memory_is_reused_without_new_page_faults():
    """By default a 256 MB block comes from mmap and goes back on free, so allocating it again
    faults every page in anew (11 of 11); with reuse_freed_memory all but the few allocations
    that grow the heap while it settles reuse pages already there (1 of 11 on the machines
    measured)."""
    assert _fresh_allocations("default") >= 9
    assert _fresh_allocations("reuse") <= 3


def test_build_run_applies_it_on_cpu_unless_turned_off(fvrid, monkeypatch):
    from sjdl.engine import setup
    from sjdl.engine.distributed import DistInfo

    calls = []
    monkeypatch.setattr(setup, "reuse_freed_memory", lambda: calls.append(1) or True)
    for flag, expected in (("true", 1), ("false", 0)):
        calls.clear()
        cfg = tiny_train_config(fvrid, "method=baseline", f"train.reuse_freed_memory={flag}")
        setup.build_run(cfg, torch.device("cpu"), DistInfo(), log=lambda *a: None)
        assert len(calls) == expected, flag
