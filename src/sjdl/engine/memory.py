"""How the C library hands memory to a CPU training (glibc on Linux).

By default glibc serves every block over 32 MB with its own ``mmap`` and gives it back with
``munmap`` when freed, so a step whose activations are large (ResNet-50 at 128x128 and up)
asks the kernel for fresh, zeroed pages every step: about 1.9 million page faults a step at
the paper preset's 128x128, batch 36. ``reuse_freed_memory`` makes glibc take such blocks
from its heap and keep freed memory there for the next step; values do not change, only
where the bytes live (README "Performance").
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc <malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# the largest trim threshold mallopt's int takes: free memory at the heap's top is given back
# to the system only beyond 2 GiB
KEEP_BYTES = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Large blocks from the heap, freed memory kept for reuse (process-wide, for this
    process and the data-loading workers it forks later). True if the C library took it;
    False elsewhere (not Linux, or a C library without glibc's ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
