"""train.reuse_freed_memory: glibc keeps freed memory for the next step (engine/memory.py)."""

import platform
import subprocess
import sys

import pytest
import torch

from tests.conftest import tiny_train_config

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate and touch 256 MB and free it, six times, as training steps do: how many page
# faults did the last three cost, as a share of the first? Printed by a fresh process (the
# setting is process-wide). With reuse, glibc's heap may still grow once or twice while its
# layout settles; the steady state is what a long training sees.
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
counts = [faults() for _ in range(6)]
print(sum(counts[3:]) / 3 / counts[0])
"""


def _steady_share(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_freed_memory_is_reused_without_new_page_faults():
    """By default a 256 MB block comes from mmap and goes back on free, so allocating it again
    faults every page in anew; with reuse_freed_memory the repeated allocations fault (almost)
    none."""
    assert _steady_share("default") > 0.5
    assert _steady_share("reuse") < 0.05


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
