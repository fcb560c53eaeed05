"""OWL's allocation, GMP's cubic schedule and soft movement's learned scores (issue 29), on toy models."""

import dataclasses

import pytest
import torch

import tickets
from bench.core.errors import ConfigError, TicketError
from tickets.methods.calibration import block_of
from tickets.methods.gmp import GMPHparams, cubic_sparsity, pruning_steps
from tickets.methods.owl import outlier_ratios, owl_allocation
from tickets.methods.soft_movement import ScoreAdam, score_gradient
from tickets.testing import toy_context

NEW = ("owl", "gmp", "soft_movement")


def test_new_methods_are_registered_with_families_citations_and_documented_hparams():
    fam = {"owl": "calibration", "gmp": "training-based", "soft_movement": "training-based"}
    for name in NEW:
        m = tickets.get_method(name)
        assert m.family == fam[name] and m.citation and not m.patterns  # their sparsities vary by layer / step
        assert all(f.metadata.get("help") for f in dataclasses.fields(m.hparams_cls))
    with pytest.raises(ConfigError, match="begin < end"):
        tickets.get_method("gmp").make_hparams({"begin": 0.8, "end": 0.5})
    with pytest.raises(ConfigError, match="lam"):
        tickets.get_method("owl").make_hparams({"lam": 1.5})


# ---- OWL ------------------------------------------------------------------------------------------
def _planted(outliers: dict) -> dict:
    """Scores of three equal 'layers' with the given fraction of huge entries each."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for layer, frac in outliers.items():
        s = torch.rand(8, 50, generator=g, dtype=torch.float64)
        s.view(-1)[: int(frac * 400)] = 100.0
        out[f"enc.{layer}.w.weight"] = s
    return out


def test_owl_gives_layers_with_more_outliers_lower_sparsity_within_lambda_of_the_target():
    scores = _planted({0: 0.0, 1: 0.01, 2: 0.05})
    lod = outlier_ratios(scores, 5.0)
    assert lod["enc.0"] < lod["enc.1"] < lod["enc.2"]
    per, _ = owl_allocation(scores, 0.6, 5.0, 0.08)
    s = [per[f"enc.{i}.w.weight"] for i in range(3)]
    assert s[0] > s[1] > s[2]
    assert s[0] - s[2] == pytest.approx(2 * 0.08) and sum(s) / 3 == pytest.approx(0.6)  # the reference's map
    # unequal layers: centred on S by size, so the whole ticket keeps the target sparsity
    scores["pooler.weight"] = torch.rand(4, 50, dtype=torch.float64)
    per, _ = owl_allocation(scores, 0.6, 5.0, 0.08)
    n = {k: v.numel() for k, v in scores.items()}
    assert sum(per[k] * n[k] for k in per) / sum(n.values()) == pytest.approx(0.6)
    with pytest.raises(TicketError, match="lower find.hparams.owl.lam"):
        owl_allocation(scores, 0.95, 5.0, 0.08)


def test_owl_allocates_over_any_score_method_and_prunes_each_layer_at_its_sparsity():
    ctx = toy_context()
    ctx.train = None
    for score in ("wanda", "pretrained_magnitude"):
        ts = tickets.get_method("owl")(ctx, {"score": score, "outlier_m": 2.0, "calib_samples": 16})
        for t in ts:
            layer = t.metadata["extra"]["layer_sparsity"]
            assert len(set(layer.values())) == 2  # the toy's two blocks differ in outliers at M = 2
            for n, keep in t.masks.items():  # per output row at its layer's sparsity
                assert ((~keep).sum(1) == round(layer[block_of(n)] * keep.shape[1])).all()
            assert abs(t.sparsity - t.metadata["target_sparsity"]) < 0.02
    with pytest.raises(ConfigError, match="no score function"):
        tickets.get_method("owl")(ctx, {"score": "imp"})


# ---- GMP ------------------------------------------------------------------------------------------
def test_gmp_follows_zhu_and_gupta_cubic_schedule():
    assert cubic_sparsity(0, 0.9, 0.1, 0, 100) == 0.1 and cubic_sparsity(100, 0.9, 0.1, 0, 100) == 0.9
    assert cubic_sparsity(50, 0.9, 0.1, 0, 100) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3)
    assert cubic_sparsity(130, 0.9, 0.1, 0, 100) == 0.9 and cubic_sparsity(5, 0.9, 0.1, 10, 100) == 0.1
    values = [cubic_sparsity(t, 0.8, 0.0, 0, 100) for t in range(0, 101, 10)]
    jumps = [b - a for a, b in zip(values, values[1:])]
    assert all(j > 0 for j in jumps) and all(a > b for a, b in zip(jumps, jumps[1:]))  # fast first, then slower
    assert pruning_steps(40, GMPHparams(begin=0.25, end=0.75, frequency=4)) == (10, 30, [10, 14, 18, 22, 26, 30])


def test_gmp_prunes_during_training_on_the_schedule_and_keeps_pruned_weights_pruned():
    ctx = toy_context(steps=12, sparsities=(0.5, 0.8))
    seen = []
    train = ctx.train

    def spy(start, masks, on_grads=None):
        def hook(w, g):
            stop = on_grads(w, g)
            seen.append({n: int((x == 0).sum()) for n, x in w.items()})
            return stop
        return train(start, masks, on_grads=hook)

    ctx.train = spy
    ts = tickets.get_method("gmp")(ctx, {"frequency": 3, "end": 0.75})
    for t in ts:
        s = t.metadata["target_sparsity"]
        sched = t.metadata["extra"]["schedule"]
        assert [step for step, _ in sched] == [0, 3, 6, 9]
        assert [x for _, x in sched] == pytest.approx([cubic_sparsity(k, s, 0.0, 0, 9) for k in (0, 3, 6, 9)], abs=1e-6)
        assert abs(t.sparsity - s) < 1e-3
    # within a run the live model's zeros only grow (pruned weights stay at 0 while it trains)
    first = [sum(d.values()) for d in seen[:12]]
    assert all(b >= a for a, b in zip(first, first[1:])) and first[-1] >= 0.5 * 4096 - 1


# ---- soft movement ----------------------------------------------------------------------------------
def test_soft_movement_score_gradient_is_straight_through_plus_the_sigmoid_penalty():
    s = {"w": torch.tensor([[0.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)}
    g = {"w": torch.tensor([[1.0, -1.0], [0.5, 0.0]], dtype=torch.float64)}
    w = {"w": torch.tensor([[0.2, 0.3], [-0.4, 1.0]], dtype=torch.float64)}
    sig = torch.sigmoid(s["w"])
    assert torch.allclose(score_gradient(s, g, w, 0.0)["w"], g["w"] * w["w"])
    assert torch.allclose(score_gradient(s, g, w, 2.0)["w"], g["w"] * w["w"] + 2.0 * sig * (1 - sig) / 4)
    opt = ScoreAdam({"w": (2, 2)}, lr=0.1)
    opt.step({"w": torch.ones(2, 2, dtype=torch.float64)})
    assert torch.allclose(opt.scores["w"], torch.full((2, 2), -0.1, dtype=torch.float64), atol=1e-6)  # Adam's first step


def test_soft_movement_learns_scores_while_training_and_its_ticket_has_the_target_sparsity():
    ctx = toy_context(steps=10, sparsities=(0.5,))
    t = tickets.get_method("soft_movement")(ctx)[0]
    assert t.sparsity == pytest.approx(0.5, abs=1e-3) and t.metadata["extra"]["score_steps"] == 10
    hard = tickets.get_method("movement")(toy_context(steps=10, sparsities=(0.5,)))[0]
    assert t.content_hash != hard.content_hash  # learned scores with a penalty, not −Σ w·g
    with pytest.raises(TicketError, match="train_steps"):
        ctx.meta.pop("train_steps")
        tickets.get_method("soft_movement")(ctx)


def test_ticketbench_methods_lists_family_pattern_support_and_citation():
    from tickets.tools import methods_table

    lines = {ln.split()[0]: ln for ln in methods_table().splitlines()[2:]}
    for name, family, nm, cite in (("wanda", "calibration", True, "Sun"), ("sparsegpt", "calibration", True, "Frantar"),
                                   ("ria", "calibration", True, "Zhang"), ("owl", "calibration", False, "Yin"),
                                   ("gmp", "training-based", False, "Zhu & Gupta"), ("imp", "training-based", True, ""),
                                   ("soft_movement", "training-based", False, "Sanh"), ("synflow", "data-free", False, "")):
        assert family in lines[name] and ("N:M" in lines[name]) == nm and cite in lines[name], name
    assert "structured (heads, FFN neurons)" in lines["structured_magnitude"]


def test_cost_estimate_counts_one_fine_tuning_per_sparsity_for_gmp_and_soft_movement():
    from bench.config import apply_overrides, load_config
    from bench.cost import estimate
    from bench.plan import build_plan

    def vqa_steps(one_shot):
        plan = build_plan(apply_overrides(load_config("smoke"), [f"find.one_shot={one_shot}", "find.sources=vqa"]))
        return estimate(plan).rows["vqa"].steps

    # against movement, which fine-tunes once (same matrix cells): one more search fine-tuning of
    # find.steps 6 for the smoke ladder's second sparsity
    once = vqa_steps("movement:vqa")
    assert vqa_steps("gmp:vqa") - once == 6 and vqa_steps("soft_movement:vqa") - once == 6
