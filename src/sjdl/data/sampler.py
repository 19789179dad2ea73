"""P x K identity sampler: each batch holds P identities with K images each.

Epoch construction (seeded by ``seed`` and the epoch number, so every rank builds the same
list): every identity's images are shuffled, topped up to K by sampling with replacement if
it has fewer than K, and cut into chunks of K (a remainder shorter than K is dropped). Then
P identities that still have chunks are drawn at random, one chunk popped from each, until
fewer than P identities are left. The batches are dealt to ranks round-robin (rank r gets
batches r, r + W, ...), trimmed so every rank gets the same number.

Epoch length per rank = floor(B / world_size), with B the number of batches built, about
sum_i max(1, n_i // K) / P for identities with n_i images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Batch sampler of dataset indices; call ``set_epoch(e)`` before each epoch."""

    def __init__(
        self,
        pids: Sequence[int],
        p: int = 6,
        k: int = 6,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index_by_pid[int(pid)].append(i)
        if len(self.index_by_pid) < p:
            raise ValueError(
                f"P x K sampling needs at least P={p} identities, "
                f"the data has {len(self.index_by_pid)}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch; ``skip`` drops its first batches (resuming mid-epoch)."""
        self.epoch = epoch
        self.skip = skip

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def _all_batches(self) -> list[list[int]]:
        if self._cache and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks: dict[int, list[list[int]]] = {}
        for pid in sorted(self.index_by_pid):
            idx = list(self.index_by_pid[pid])
            if len(idx) < self.k:
                idx = idx + list(rng.choice(idx, self.k - len(idx), replace=True))
            idx = [int(i) for i in rng.permutation(idx)]
            chunks[pid] = [idx[j : j + self.k] for j in range(0, len(idx) - self.k + 1, self.k)]
        batches = []
        available = [pid for pid in chunks if chunks[pid]]
        while len(available) >= self.p:
            chosen = rng.choice(len(available), self.p, replace=False)
            batch = []
            for c in sorted(chosen):
                batch += chunks[available[c]].pop()
            batches.append(batch)
            available = [pid for pid in available if chunks[pid]]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        per_rank = len(batches) // self.world_size
        mine = batches[self.rank : per_rank * self.world_size : self.world_size]
        return iter(mine[self.skip :])

    def __len__(self) -> int:
        return max(0, len(self._all_batches()) // self.world_size - self.skip)


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled fixed-size batches (last partial batch dropped), seeded per epoch; for
    unlabelled real images, which have no identities to sample by. DDP-aware like PKSampler."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if n < batch_size:
            raise ValueError(f"need at least {batch_size} images for one batch, got {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch; ``skip`` drops its first batches (resuming mid-epoch)."""
        self.epoch = epoch
        self.skip = skip

    def __iter__(self) -> Iterator[list[int]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()
        batches = [
            perm[i : i + self.batch_size]
            for i in range(0, self.n - self.batch_size + 1, self.batch_size)
        ]
        per_rank = len(batches) // self.world_size
        mine = batches[self.rank : per_rank * self.world_size : self.world_size]
        return iter(mine[self.skip :])

    def __len__(self) -> int:
        return max(0, (self.n // self.batch_size) // self.world_size - self.skip)
