"""Straightforward k-reciprocal re-ranking with per-item set loops (Zhong et al. 2017), the
reference the vectorised ``sjdl.evaluation.k_reciprocal_rerank`` must agree with."""

import numpy as np
import torch

from sjdl.evaluation.rerank import _neighbours, _sq_dist


def _sets(nn, k):
    fwd = nn[:, : k + 1]
    return [fwd[i][[i in nn[j, : k + 1] for j in fwd[i]]] for i in range(len(nn))]


def reference_rerank(query, gallery, k1=20, k2=6, lambda_value=0.3, metric="euclidean"):
    q, g = query.float(), gallery.float()
    feats = torch.cat([q, g])
    n, nq = len(feats), len(q)
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    nn, row_max = _neighbours(feats, k1 + 1, metric, 1024)
    recip, half = _sets(nn, k1), _sets(nn, int(round(k1 / 2)))
    v = np.zeros((n, n))
    for i in range(n):
        members = set(recip[i].tolist())
        expanded = set(members)
        for c in recip[i]:
            cand = set(half[c].tolist())
            if len(cand & members) > 2 / 3 * len(cand):
                expanded |= cand
        idx = np.array(sorted(expanded))
        w = torch.exp(-_sq_dist(feats[i : i + 1], feats[idx], metric)[0] / row_max[i]).numpy()
        v[i, idx] = w / w.sum()
    v = np.stack([v[nn[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((nq, n - nq))
    for i in range(nq):
        for j in range(n - nq):
            m = np.minimum(v[i], v[nq + j]).sum()
            jac[i, j] = 1 - m / (2 - m)
    orig = (_sq_dist(q, g, metric) / row_max[:nq, None]).numpy()
    return torch.from_numpy((1 - lambda_value) * jac + lambda_value * orig).float()
