"""Tests of the batches: deterministic loaders, subsets, endless passes, batches moved to a device."""

import pytest
import torch

from fairprune_lite import loading, train
from fairprune_lite.data import FairDataset


def test_loader_is_deterministic_covers_all_and_does_not_touch_global_rng():
    g = torch.Generator().manual_seed(0)
    ds = FairDataset(torch.randn(103, 3, generator=g), torch.arange(103) % 2, torch.arange(103) // 52, name="toy")
    l1 = loading.make_loader(ds, 10, shuffle=True, seed=7)
    l2 = loading.make_loader(ds, 10, shuffle=True, seed=7)
    assert len(l1) == 11
    state = torch.get_rng_state()
    e1 = [b[1].clone() for b in l1]
    assert torch.equal(torch.get_rng_state(), state)
    e2 = [b[1].clone() for b in l2]
    assert all(torch.equal(a, b) for a, b in zip(e1, e2, strict=True))
    # every example exactly once per pass: x rows are distinct, so compare sorted first columns
    xs = torch.cat([b[0][:, 0] for b in loading.make_loader(ds, 10, shuffle=True, seed=1)])
    assert torch.equal(xs.sort().values, ds.x[:, 0].sort().values)
    # a second pass is a different order, unshuffled is the identity
    p1 = torch.cat([b[0][:, 0] for b in l1])
    p2 = torch.cat([b[0][:, 0] for b in l1])
    assert not torch.equal(p1, p2)
    seq = torch.cat([b[0][:, 0] for b in loading.make_loader(ds, 10, shuffle=False)])
    assert torch.equal(seq, ds.x[:, 0])
    assert len(loading.make_loader(ds, 10, shuffle=False, drop_last=True)) == 10
    with pytest.raises(ValueError, match="batch_size"):
        loading.make_loader(ds, 0, shuffle=False)


def test_batch_loader_reads_a_batch_in_one_call_when_the_dataset_can():
    """Image caches expose ``batch(idx)``: the loader uses it instead of one read per example."""
    class Store(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.calls = 0
            self.x = torch.arange(40.0).reshape(20, 2)
            self.ys = torch.arange(20) % 2

        def __len__(self) -> int:
            return 20

        def __getitem__(self, i):  # the slow path the loader must not take
            raise AssertionError("read one example at a time")

        def batch(self, idx):
            self.calls += 1
            idx = torch.as_tensor(idx)
            return self.x[idx], self.ys[idx], 1 - self.ys[idx]

    ds = Store()
    batches = list(loading.BatchLoader(ds, batch_size=8, shuffle=False))
    assert ds.calls == 3 and [len(b[0]) for b in batches] == [8, 8, 4]
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.x)


def test_subset_cycle_and_batch_checks():
    ds = FairDataset(torch.arange(20.0).reshape(10, 2), torch.arange(10) % 2, torch.zeros(10).long(), name="toy")
    part = loading.subset(ds, torch.tensor([1, 3, 5]))
    assert len(part) == 3 and torch.equal(part.x[:, 0], torch.tensor([2.0, 6.0, 10.0]))
    assert isinstance(loading.subset(torch.utils.data.TensorDataset(ds.x, ds.y, ds.s), torch.tensor([0, 2])),
                      torch.utils.data.Subset)
    batches = loading.cycle(loading.make_loader(part, 2, shuffle=False))
    assert [len(next(batches)[1]) for _ in range(4)] == [2, 1, 2, 1]
    with pytest.raises(ValueError, match="no batches"):
        next(loading.cycle([]))
    with pytest.raises(ValueError, match=r"\(x, y, s\)"):
        loading._to((ds.x, ds.y), torch.device("cpu"))


def test_the_former_homes_still_answer():
    """Code written against ``train`` (bilevel, pruners, the chapters) keeps importing these from there."""
    for name in ("BatchLoader", "make_loader", "subset", "cycle", "model_device", "_to", "_batches"):
        assert getattr(train, name) is getattr(loading, name)
