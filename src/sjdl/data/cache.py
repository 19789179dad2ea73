"""Decoded images kept in memory (``data.cache_mb``), so small sets are decoded once per
process instead of once per epoch and evaluation.

What is kept is the decoder's own output (uint8 pixels, or float32 for 16-bit greys) before
any resize, so an image read from the cache is the same tensor as one decoded again. Entries
are keyed by path, decoding size and the file's modification time, size and inode: a file
changed on disk is decoded again. The cache fills up to its limit and then keeps what it has
(no eviction: a set read in the same order every epoch would never hit an LRU cache smaller
than itself). Each loading process has its own (DataLoader workers: the limit is shared out).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class DecodedCache:
    """Decoded pixel arrays by (path, decoding size, file identity), up to ``limit`` bytes."""

    def __init__(self, limit: int = 0):
        self.limit, self.used = limit, 0
        self.items: dict[tuple, np.ndarray] = {}
        self.hits = self.misses = 0

    def configure(self, limit: int) -> None:
        """Set the limit in bytes (0: off); a limit below what is held empties the cache."""
        self.limit = max(0, int(limit))
        if self.used > self.limit:
            self.items.clear()
            self.used = 0

    @staticmethod
    def key(path: str | Path, max_side: int | None) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # the reader names the problem
        return (str(path), max_side, st.st_mtime_ns, st.st_size, st.st_ino)

    def get(self, key: tuple | None) -> np.ndarray | None:
        if key is None or not self.limit:
            return None
        arr = self.items.get(key)
        self.hits += arr is not None
        self.misses += arr is None
        return arr

    def put(self, key: tuple | None, arr: np.ndarray) -> None:
        if key is None or key in self.items or self.used + arr.nbytes > self.limit:
            return
        arr.setflags(write=False)  # callers copy before they convert
        self.items[key] = arr
        self.used += arr.nbytes


CACHE = DecodedCache()


def configure_cache(cache_mb: int, workers: int) -> None:
    """``data.cache_mb`` shared out among the processes that decode (main or workers)."""
    CACHE.configure((int(cache_mb) << 20) // max(1, int(workers)))
