from collections import Counter

import pytest

from sjdl.data import PKSampler

PIDS = [pid for pid in range(10) for _ in range(3 + pid)]  # id i has 3 + i images


def _batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_batches_hold_p_ids_times_k_images():
    batches = _batches(PKSampler(PIDS, p=3, k=4, seed=1))
    assert batches
    for b in batches:
        counts = Counter(PIDS[i] for i in b)
        assert len(b) == 12 and len(counts) == 3 and set(counts.values()) == {4}


def test_ids_with_fewer_than_k_images_are_sampled_with_replacement():
    pids = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    for b in _batches(PKSampler(pids, p=3, k=4, seed=0)):
        zero = [i for i in b if pids[i] == 0]
        assert len(zero) == 4 and set(zero) <= {0, 1}  # id 0 has only 2 images


def test_seeded_deterministic_and_epochs_differ():
    a, b = PKSampler(PIDS, 3, 4, seed=5), PKSampler(PIDS, 3, 4, seed=5)
    assert _batches(a, 0) == _batches(b, 0)
    assert _batches(a, 0) != _batches(a, 1)
    assert _batches(a, 0) != _batches(PKSampler(PIDS, 3, 4, seed=6), 0)


def test_epoch_length_matches_documented_formula():
    s = PKSampler(PIDS, p=3, k=4, seed=0)
    chunks = sum(max(1, n // 4) for n in Counter(PIDS).values())
    assert len(s) == len(_batches(s)) <= chunks // 3
    assert len(s) >= (chunks - 2 * max(Counter(PIDS).values()) // 4) // 3  # greedy tail loss


def test_distributed_shards_are_disjoint_and_equal():
    full = _batches(PKSampler(PIDS, 3, 4, seed=2), 3)
    shards = [_batches(PKSampler(PIDS, 3, 4, seed=2, rank=r, world_size=2), 3) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(full) // 2
    as_tuples = [set(map(tuple, s)) for s in shards]
    assert not as_tuples[0] & as_tuples[1]
    assert as_tuples[0] | as_tuples[1] <= set(map(tuple, full))


def test_state_round_trip_and_errors():
    s = PKSampler(PIDS, 3, 4, seed=9)
    s.set_epoch(4)
    t = PKSampler(PIDS, 3, 4, seed=0)
    t.load_state_dict(s.state_dict())
    assert list(t) == list(s)
    with pytest.raises(ValueError, match="at least P=20 identities, the data has 10"):
        PKSampler(PIDS, p=20, k=2)
