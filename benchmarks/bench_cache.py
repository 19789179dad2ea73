"""Decoded-image cache (``data.cache_mb``) on and off, side by side in one process: the data
loading of the demo's SJDL training (synthetic P x K batches with clear targets + real
batches) over several epochs, and evaluations of the demo's foggy and clear test sets (the
study and the demo evaluate every model on the same images). Rounds alternate the order.
Usage: python benchmarks/bench_cache.py [--epochs 3] [--rounds 2] [--evals 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.config import load_config  # noqa: E402
from sjdl.data import read_dataset, train_loader  # noqa: E402
from sjdl.data.cache import CACHE  # noqa: E402
from sjdl.experiments.runs import clear_records, evaluate_test, imagenet_model  # noqa: E402


def loading(cache_mb: int, epochs: int) -> list[float]:
    """Seconds per epoch of loading the demo's SJDL training batches (no model)."""
    cfg = load_config("demo", ["method=sjdl", f"data.cache_mb={cache_mb}"])
    data = read_dataset(cfg.data, with_real=True)
    syn = train_loader(data.train, cfg.data, seed=0)
    real = train_loader(data.real_train, cfg.data, seed=0, batch_size=cfg.data.real_batch_size)
    out = []
    for epoch in range(epochs):
        syn.batch_sampler.set_epoch(epoch)
        t = time.perf_counter()
        it = iter(real)
        for _ in syn:
            next(it, None)
        out.append(time.perf_counter() - t)
    return out


def evaluations(cache_mb: int, n: int) -> list[float]:
    """Seconds per evaluation of the ImageNet model on the demo's foggy + clear test sets."""
    cfg = load_config("demo", ["method=baseline", f"data.cache_mb={cache_mb}"])
    data = read_dataset(cfg.data, with_real=False)
    model = imagenet_model(cfg, torch.device("cpu"))
    tests = [(data.query, data.gallery), (clear_records(data.query), clear_records(data.gallery))]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        for q, g in tests:
            evaluate_test(model, cfg, q, g, torch.device("cpu"))
        out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--evals", type=int, default=3)
    args = ap.parse_args()
    res = {mb: {"load": [], "eval": []} for mb in (0, 512)}
    for r in range(args.rounds):
        for mb in (0, 512) if r % 2 == 0 else (512, 0):
            CACHE.configure(0)  # each setting starts empty, as a new process would
            res[mb]["load"].append(loading(mb, args.epochs))
            CACHE.configure(0)
            res[mb]["eval"].append(evaluations(mb, args.evals))
            print(f"round {r + 1}, cache_mb={mb}: {res[mb]['load'][-1]} {res[mb]['eval'][-1]}")
    print(header("decoded-image cache (data.cache_mb), demo data, side by side in one process"))
    print(
        f"# python benchmarks/bench_cache.py --epochs {args.epochs} --rounds {args.rounds} "
        f"--evals {args.evals}"
    )
    print(
        f"{'data.cache_mb':14s} {'epoch 1 s':>10s} {'later epochs s':>15s} "
        f"{'eval 1 s':>9s} {'later evals s':>14s}"
    )
    med = {}
    for mb, r in res.items():
        first = statistics.median(x[0] for x in r["load"])
        later = statistics.median(v for x in r["load"] for v in x[1:])
        e1 = statistics.median(x[0] for x in r["eval"])
        e2 = statistics.median(v for x in r["eval"] for v in x[1:])
        med[mb] = (first, later, e1, e2)
        print(f"{mb:<14d} {first:10.2f} {later:15.2f} {e1:9.2f} {e2:14.2f}")
    (f0, l0, e10, e20), (f1, l1, e11, e21) = med[0], med[512]
    print(
        f"# with / without: loading epoch 1 {f1 / f0:.2f}, later epochs {l1 / l0:.2f}; "
        f"evaluation 1 {e11 / e10:.2f}, later {e21 / e20:.2f}"
    )


if __name__ == "__main__":
    main()
