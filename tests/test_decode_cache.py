"""data.cache_mb: decoded images kept in memory are the same pixels, a changed file is read
again, the limit holds (no eviction), and training batches are identical with or without."""

import os

import numpy as np
import torch

from sjdl.config import load_config
from sjdl.data import read_fvrid, train_loader
from sjdl.data.cache import CACHE, DecodedCache
from sjdl.data.io import read_image

from .conftest import write_image


def test_cached_read_is_the_same_tensor_and_a_changed_file_is_read_again(tmp_path):
    path = write_image(tmp_path / "a.png", seed=1)
    saved = CACHE.limit
    try:
        CACHE.configure(1 << 20)
        first = read_image(path, cached=True)
        hits = CACHE.hits
        again = read_image(path, cached=True)
        assert CACHE.hits == hits + 1 and torch.equal(first, again)
        assert torch.equal(first, read_image(path))  # as decoded without the cache
        again[0, 0, 0] = -1.0  # a caller's change never reaches the cache
        assert torch.equal(read_image(path, cached=True), first)
        write_image(path, seed=2)  # other pixels, a new modification time / size
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        changed = read_image(path, cached=True)
        assert torch.equal(changed, read_image(path)) and not torch.equal(changed, first)
    finally:
        CACHE.configure(0)
        CACHE.configure(saved)


def test_the_limit_holds_without_eviction():
    cache = DecodedCache(250)
    a, b = np.zeros(200, np.uint8), np.ones(100, np.uint8)
    cache.put(("a",), a)
    cache.put(("b",), b)  # 300 > 250 bytes: not kept, and "a" stays
    assert cache.get(("a",)) is a and cache.get(("b",)) is None and cache.used == 200
    cache.configure(100)  # below what is held: emptied
    assert cache.used == 0 and cache.get(("a",)) is None
    cache.configure(0)
    cache.put(("b",), b)
    assert cache.get(("b",)) is None and not cache.items  # 0 = off


def test_training_batches_are_the_same_with_and_without_the_cache(fvrid):
    data = read_fvrid(fvrid)
    runs = []
    for mb in (0, 64, 64):  # off, then filling, then reading from the cache
        cfg = load_config(
            overrides=[
                "data.size_train=[64,32]",
                "data.num_ids=2",
                "data.num_instances=2",
                "data.workers=0",
                f"data.cache_mb={mb}",
            ]
        )
        loader = train_loader(data.train, cfg.data, seed=3)
        torch.manual_seed(0)  # the augmentations draw from torch's global generator
        runs.append([(b["img"], b["clear"]) for b in loader])
    assert CACHE.hits > 0
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for (img, clear), (img0, clear0) in zip(other, runs[0], strict=True):
            assert torch.equal(img, img0) and torch.equal(clear, clear0)
    CACHE.configure(0)
