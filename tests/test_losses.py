"""Loss terms against hand computations, and the pairing tables against METHOD.md."""

from __future__ import annotations

import pytest
import torch

from sketchstudio.vocab import TAP_WIDTHS
from trainer.losses import (
    F_TEACHER_PAIRS,
    G_TEACHER_PAIRS,
    STUDENT_PAIRS,
    LossWeights,
    feature_distance,
    feature_mse,
    gram,
    make_adapters,
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


def test_objective_uses_the_configured_comparisons_and_reconstruction():
    """tap_compare, stu_compare and rec_loss must reach their terms in both students' steps.

    The taps are constant, so every value is by hand: teacher taps 3 and 2 are parallel to the
    student's 1 (cosine 0; MSE 3·2² + 3·1² = 15), the other student's −1 is opposite (cosine 2
    per pair, 12; MSE 6·2² = 24), an output 0 against a target 2 is L1 2, L2 4.
    """
    out, target = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 2.0)
    chosen = LossWeights(tap_compare="cosine", stu_compare="cosine", rec_loss="l1")
    for is_g, pairs in ((True, G_TEACHER_PAIRS), (False, F_TEACHER_PAIRS)):
        args = (out, target, _taps(1.0), _taps(-1.0), _teacher(3.0), _teacher(2.0), pairs, is_g)
        _, rep = student_objective(*args, chosen)
        assert rep == pytest.approx({"tea": 0.0, "stu": 12.0, "rec": 2.0}, abs=1e-5), is_g
        _, rep = student_objective(*args, LossWeights())
        assert rep == pytest.approx({"tea": 15.0, "stu": 24.0, "rec": 4.0}), is_g


def test_texture_terms_without_the_outputs_features_are_refused():
    """style/perceptual need the teacher's taps of the output; without them the call says so
    instead of failing inside the Gram matrix on ``None``."""
    args = (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), _taps(1.0), _taps(0.0), _teacher(0.0),
            _teacher(0.0), G_TEACHER_PAIRS, True)
    with pytest.raises(ValueError, match="^style/perceptual terms need the teacher's features of the output$"):
        student_objective(*args, LossWeights(style=1.0))


def test_standardised_constant_channel_is_zero_not_nan():
    """A dead (constant) channel, common after ReLU, standardises to 0: two dead channels are at
    distance 0, a dead and a live one (z-scores of 1..4, mean z² = 1) at distance 1."""
    dead, live = torch.full((1, 1, 2, 2), 5.0), torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert feature_distance(dead, torch.zeros_like(dead), "standardised").item() == 0.0
    assert feature_distance(dead, live, "standardised").item() == pytest.approx(1.0, rel=1e-4)


def test_gram_divides_by_channels_times_height_times_width():
    # N=1, C=2, H=2, W=1: ch0 = (1, 2), ch1 = (0, 3); products 5, 6, 9 over C·H·W = 4
    f = torch.tensor([[[[1.0], [2.0]], [[0.0], [3.0]]]])
    assert torch.allclose(gram(f), torch.tensor([[[5.0, 6.0], [6.0, 9.0]]]) / 4)


def test_feature_distance_defaults_to_mse_and_refuses_broadcasting():
    """The default comparison is the paper's MSE; taps of different shapes are an error in every
    mode (cosine and standardised would otherwise broadcast a 1×1 tap silently)."""
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert feature_distance(a, torch.zeros_like(a)).item() == pytest.approx(7.5)
    for mode in ("mse", "standardised", "cosine"):
        with pytest.raises(ValueError, match=r"feature shapes differ: \(1, 1, 2, 2\) vs \(1, 1, 1, 1\)"):
            feature_distance(a, torch.ones(1, 1, 1, 1), mode)


def test_unknown_reconstruction_loss_is_named():
    with pytest.raises(ValueError, match="unknown reconstruction loss 'l3'"):
        rec_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), "l3")


def test_width_adapters_are_bias_free_and_variance_preserving():
    """A narrower student (ngf=8) gets FitNets 1×1 regressors without a bias (the literal loss plus
    a projection, nothing learnt beyond it) drawn from N(0, 1/C_in), so the projected taps start on
    the scale of the student's own."""
    torch.manual_seed(0)
    ad = make_adapters(G_TEACHER_PAIRS, ngf=8)
    assert set(ad) == {"IC", "DC1", "DC2", "Block", "UC1", "UC2"}
    for tap, conv in ad.items():
        w = conv.weight.detach()
        assert conv.bias is None, tap
        assert abs(float(w.mean())) < 0.05, tap
        assert float(w.std()) == pytest.approx((1.0 / (TAP_WIDTHS[tap] * 8)) ** 0.5, rel=0.1), tap


def test_cosine_ignores_length_at_any_scale_and_unknown_modes_are_named():
    """Small taps (norms below 1) are compared by direction too: parallel is 0, opposite is 2."""
    a = torch.tensor([0.1, 0.0]).view(1, 2, 1, 1)
    assert feature_distance(a, 2 * a, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert feature_distance(a, -a, "cosine").item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown feature comparison 'pearson'"):
        feature_distance(a, a, "pearson")


def test_adapters_reach_the_tea_term():
    """A width adapter projects the student's tap before it is compared: IC doubled to 2 against
    the teacher's 3 costs 1 instead of 4, so the G objective's tea term drops from 15 to 12."""
    double = torch.nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        double.weight.copy_(2 * torch.eye(2).view(2, 2, 1, 1))
    args = (torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), _taps(1.0), _taps(1.0), _teacher(3.0),
            _teacher(2.0), G_TEACHER_PAIRS, True, LossWeights())
    assert student_objective(*args)[1]["tea"] == pytest.approx(15.0)
    assert student_objective(*args, adapters={"IC": double})[1]["tea"] == pytest.approx(12.0)
