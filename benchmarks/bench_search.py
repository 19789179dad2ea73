"""Gallery search at scale: exact FAISS flat index vs approximate IVF / HNSW vs a brute-force
chunked torch matmul + topk, same vectors, one run.

Default: 1 000 000 x 2048-d float32 vectors (8 GB; clustered like ReID embeddings: 20 000
centres + noise), queries are noisy copies of gallery vectors. Prints build time, query
latency p50/p99 for batches of 1 / 100 / 1000 queries, and recall@10 against exact search.
HNSW is built on a subset (--hnsw-n) because its build is slow on 2 cores.

Usage: python benchmarks/bench_search.py [--n 1000000] [--dim 2048] [--hnsw-n 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.retrieval.index import new_faiss_index  # noqa: E402


def make_data(n, dim, n_queries, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(20000, dim, generator=gen)
    data = torch.empty(n, dim)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        ids = torch.randint(0, len(centres), (e - s,), generator=gen)
        data[s:e] = centres[ids] + 0.7 * torch.randn(e - s, dim, generator=gen)
    picks = torch.randint(0, n, (n_queries,), generator=gen)
    queries = data[picks] + 0.3 * torch.randn(n_queries, dim, generator=gen)
    return data.numpy(), queries.numpy()


def torch_search(data_t, q, k=10, chunk=200_000, sq_norms=None):
    """Exact L2 top-k by chunked matmul (|q|^2 + |x|^2 - 2 q.x), merged across chunks;
    ``sq_norms`` = precomputed |x|^2 of the gallery (computed here when not given)."""
    qt = torch.from_numpy(q)
    if sq_norms is None:
        sq_norms = data_t.pow(2).sum(1)
    best_d = torch.full((len(q), k), float("inf"))
    best_i = torch.zeros((len(q), k), dtype=torch.long)
    q2 = qt.pow(2).sum(1, keepdim=True)
    for s in range(0, len(data_t), chunk):
        x = data_t[s : s + chunk]
        d = q2 + sq_norms[s : s + chunk] - 2 * qt @ x.t()
        vals, idx = d.topk(min(k, len(x)), dim=1, largest=False)
        cat_d, cat_i = torch.cat([best_d, vals], 1), torch.cat([best_i, idx + s], 1)
        order = cat_d.topk(k, dim=1, largest=False).indices
        best_d, best_i = cat_d.gather(1, order), cat_i.gather(1, order)
    return best_i.numpy()


def latencies(fn, queries, batch, repeats):
    times = []
    for r in range(repeats):
        q = queries[(r * batch) % len(queries) :][:batch]
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    return np.percentile(times, 50), np.percentile(times, 99)


def recall(found, truth):
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def report(name, build_s, fn, queries, truth=None):
    row = [f"{name:28s}", f"{build_s:8.1f}"]
    for batch, repeats in ((1, 20), (100, 5), (1000, 2)):
        p50, p99 = latencies(fn, queries, batch, repeats)
        row.append(f"{1000 * p50:9.0f}/{1000 * p99:<7.0f}")
    found = fn(queries[:1000])
    row.append(f"{recall(found, truth):6.3f}" if truth is not None else "   1.000")
    print(" ".join(row), flush=True)
    return found


def faiss_exact(data, queries, truth, dim):
    t = time.perf_counter()
    flat = new_faiss_index(dim, "flat")
    flat.add(data)
    report(
        "faiss flat (exact)",
        time.perf_counter() - t,
        lambda q: flat.search(q, 10)[1],
        queries,
        truth,
    )


def faiss_ivf(data, queries, truth, dim):
    t = time.perf_counter()
    ivf = new_faiss_index(dim, "ivf", n_train=len(data))
    rng = np.random.default_rng(0)
    ivf.train(data[rng.choice(len(data), min(len(data), 40 * ivf.nlist), replace=False)])
    ivf.add(data)
    build = time.perf_counter() - t
    for nprobe in sorted({8, ivf.nprobe}):  # the speed / recall trade-off (default: 32)
        ivf.nprobe = nprobe
        report(
            f"faiss IVF{ivf.nlist} nprobe {nprobe}",
            build,
            lambda q: ivf.search(q, 10)[1],
            queries,
            truth,
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--hnsw-n", type=int, default=100_000)
    args = ap.parse_args()
    print(header(f"gallery search: {args.n} x {args.dim}-d, top-10"))
    t = time.perf_counter()
    data, queries = make_data(args.n, args.dim, 1000)
    print(f"data generated in {time.perf_counter() - t:.0f} s ({data.nbytes / 2**30:.1f} GiB)")
    print(
        f"{'method':28s} {'build s':>8s} {'1 q p50/p99 ms':>17s} {'100 q p50/p99 ms':>17s} "
        f"{'1000 q p50/p99 ms':>17s} recall@10"
    )
    data_t = torch.from_numpy(data)
    t = time.perf_counter()
    norms = data_t.pow(2).sum(1)  # the "index" of the brute-force baseline
    truth = report(
        "torch matmul + topk (exact)",
        time.perf_counter() - t,
        lambda q: torch_search(data_t, q, sq_norms=norms),
        queries,
    )
    faiss_exact(data, queries, truth, args.dim)
    gc.collect()
    faiss_ivf(data, queries, truth, args.dim)
    gc.collect()
    sub = data[: args.hnsw_n]
    subq = sub[np.random.default_rng(1).choice(len(sub), 1000)] + 0.3 * np.random.default_rng(
        2
    ).standard_normal((1000, args.dim)).astype(np.float32)
    sub_truth = torch_search(torch.from_numpy(sub), subq)
    t = time.perf_counter()
    hnsw = new_faiss_index(args.dim, "hnsw")
    hnsw.add(sub)
    print(f"-- on the first {args.hnsw_n} vectors:")
    report(
        f"faiss HNSW32 ({args.hnsw_n})",
        time.perf_counter() - t,
        lambda q: hnsw.search(q, 10)[1],
        subq,
        sub_truth,
    )


if __name__ == "__main__":
    main()
