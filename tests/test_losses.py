"""Loss terms against hand computations, and the pairing tables against METHOD.md."""

from __future__ import annotations

import pytest
import torch

from trainer.losses import (
    F_TEACHER_PAIRS,
    G_TEACHER_PAIRS,
    STUDENT_PAIRS,
    LossWeights,
    feature_mse,
    rec_loss,
    stu_stu_loss,
    student_objective,
    tea_stu_loss,
)


def test_feature_mse_is_sum_of_squares_over_chw():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # 1×1×2×2
    b = torch.zeros_like(a)
    assert feature_mse(a, b).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    a2 = torch.cat([a, 2 * a])  # batch of 2: mean over the batch of per-sample values
    assert feature_mse(a2, torch.zeros_like(a2)).item() == pytest.approx((7.5 + 30) / 2)
    with pytest.raises(ValueError, match="shapes differ"):
        feature_mse(a, torch.zeros(1, 2, 2, 2))


def test_rec_loss_is_pixel_mean():
    out = torch.tensor([[[[0.5, -0.5]]]])
    assert rec_loss(out, torch.zeros_like(out)).item() == pytest.approx(0.25)


def test_pairing_tables_match_method():
    assert G_TEACHER_PAIRS == (("P", "relu1_1", "IC"), ("P", "relu2_1", "DC1"), ("P", "relu3_1", "DC2"),
                               ("S", "relu3_1", "Block"), ("S", "relu2_1", "UC1"), ("S", "relu1_1", "UC2"))
    assert F_TEACHER_PAIRS == (("P", "relu1_1", "UC2"), ("P", "relu2_1", "UC1"), ("P", "relu3_1", "Block"),
                               ("S", "relu3_1", "DC2"), ("S", "relu2_1", "DC1"), ("S", "relu1_1", "IC"))
    assert STUDENT_PAIRS == (("IC", "UC2"), ("DC1", "UC1"), ("DC2", "Block"), ("Block", "DC2"),
                             ("UC1", "DC1"), ("UC2", "IC"))


def _taps(val: float) -> dict[str, torch.Tensor]:
    shapes = {"IC": (1, 2, 4, 4), "DC1": (1, 3, 2, 2), "DC2": (1, 4, 1, 1), "Block": (1, 4, 1, 1),
              "UC1": (1, 3, 2, 2), "UC2": (1, 2, 4, 4)}
    return {k: torch.full(s, val) for k, s in shapes.items()}


def _teacher(val: float) -> dict[str, torch.Tensor]:
    return {"relu1_1": torch.full((1, 2, 4, 4), val), "relu2_1": torch.full((1, 3, 2, 2), val),
            "relu3_1": torch.full((1, 4, 1, 1), val)}


def test_tea_stu_and_stu_stu_by_hand():
    # Every pair differs by a constant, so each term is that constant squared; six pairs.
    student = _taps(1.0)
    tp, ts = _teacher(3.0), _teacher(0.0)
    # G: three pairs against P (diff 2 → 4 each), three against S (diff 1 → 1 each)
    assert tea_stu_loss(tp, ts, student, G_TEACHER_PAIRS).item() == pytest.approx(3 * 4 + 3 * 1)
    assert stu_stu_loss(_taps(1.0), _taps(-1.0)).item() == pytest.approx(6 * 4)


def test_zero_weight_removes_term_and_its_gradient():
    g = {k: v.clone().requires_grad_(True) for k, v in _taps(1.0).items()}
    out = torch.zeros(1, 3, 4, 4, requires_grad=True)
    args = (out, torch.ones(1, 3, 4, 4), g, _taps(0.0), _teacher(3.0), _teacher(0.0), G_TEACHER_PAIRS, True)
    total, rep = student_objective(*args, LossWeights(tea=0.0, stu=1.0, rec=1.0))
    assert set(rep) == {"stu", "rec"}
    assert total.item() == pytest.approx(6 * 1 + 1)
    total.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    # with only tea weight 0 the features still get the stu-stu gradient: check tea's absence
    g2 = {k: v.detach().clone().requires_grad_(True) for k, v in g.items()}
    t2, _ = student_objective(out.detach(), torch.ones(1, 3, 4, 4), g2, _taps(1.0), _teacher(3.0),
                              _teacher(0.0), G_TEACHER_PAIRS, True, LossWeights(tea=0.0, stu=1.0, rec=0.0))
    t2.backward()
    assert all(v.grad.abs().sum() == 0 for v in g2.values())  # stu diff is 0, tea is off → no gradient


def test_other_students_taps_are_fixed_targets():
    g = {k: v.clone().requires_grad_(True) for k, v in _taps(1.0).items()}
    f = {k: v.clone().requires_grad_(True) for k, v in _taps(0.0).items()}
    total, _ = student_objective(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), g, f, _teacher(0.0),
                                 _teacher(0.0), G_TEACHER_PAIRS, True, LossWeights())
    total.backward()
    assert all(v.grad is not None for v in g.values())
    assert all(v.grad is None for v in f.values())
