"""fairprune_lite.book_extra: the chapters' shared toy problems and pretraining."""
from __future__ import annotations

import pytest
import torch

from fairprune_lite import book_extra as B


def test_unfair_problem_shape_groups_and_determinism():
    a, b = B.unfair_problem(), B.unfair_problem()
    assert a.input_shape == (9,)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert torch.equal(a.train.x[:, 8].long(), a.train.s)          # the last feature is the group
    assert 0.2 < float(a.train.s.float().mean()) < 0.3
    assert len(a.train) + len(a.val) + len(a.test) == 4000


def test_swapped_feature_problem_needs_the_group_feature():
    sp = B.swapped_feature_problem(n=600)
    assert sp.input_shape == (5,)
    x, y, s = sp.train.x, sp.train.y, sp.train.s
    # the majority's label agrees with feature 0, the minority's with feature 1 (noise aside)
    assert float(((x[s == 0, 0] > 0).long() == y[s == 0]).float().mean()) > 0.85
    assert float(((x[s == 1, 1] > 0).long() == y[s == 1]).float().mean()) > 0.85


@pytest.mark.parametrize("n", [10, 1.5, True])
def test_bad_n_names_the_argument(n):
    with pytest.raises(ValueError, match="^n must"):
        B.unfair_problem(n=n)


def test_pretrain_mlp_is_deterministic_and_checks_epochs():
    sp = B.unfair_problem(n=800)
    m1, m2 = B.pretrain_mlp(sp, epochs=2), B.pretrain_mlp(sp, epochs=2)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="epochs"):
        B.pretrain_mlp(sp, epochs=0)
