"""Batch order, process split and learning-rate schedule of the training loop (pure)."""

import pytest

from sumcircuit.training.order import epoch_batches, micro_batches
from sumcircuit.training.schedule import lr_factor


def test_epoch_batches_cover_every_example_once_in_length_buckets():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]
    batches = epoch_batches(lengths, 4, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert sorted(len(b) for b in batches) == [2, 4, 4]
    # each batch holds consecutive lengths of the sorted order
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert spans == [(0, 3), (4, 7), (8, 9)]


def test_epoch_batches_depend_only_on_seed_and_epoch():
    lengths = [3] * 12  # all ties: the order comes from the seeded tie-break alone
    a = epoch_batches(lengths, 3, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 3, seed=1, epoch=0)
    assert a != epoch_batches(lengths, 3, seed=1, epoch=1)
    assert a != epoch_batches(lengths, 3, seed=2, epoch=0)


def test_micro_batches_split_a_global_batch_across_ranks_and_accumulation():
    batch = list(range(8))
    assert micro_batches(batch, 2, world=2, rank=0, grad_accum=2) == [[0, 1], [4, 5]]
    assert micro_batches(batch, 2, world=2, rank=1, grad_accum=2) == [[2, 3], [6, 7]]
    assert micro_batches([0, 1, 2], 2, world=2, rank=1, grad_accum=1) == [[2]]
    assert micro_batches([0, 1], 2, world=2, rank=1, grad_accum=1) == [[]]


@pytest.mark.parametrize(
    ("step", "kind", "expected"),
    [
        (0, "linear", 0.5),
        (1, "linear", 1.0),
        (2, "linear", 1.0),
        (6, "linear", 0.5),
        (6, "cosine", 0.5),
        (4, "cosine", (1 + 0.7071067811865476) / 2),
        (10, "linear", 0.0),
    ],
)
def test_lr_factor_warmup_then_decay(step, kind, expected):
    # total 10, warmup 2: decay progress p = (step - 2) / 8
    assert lr_factor(step, 10, 2, kind) == pytest.approx(expected)
