import dataclasses
import re
from pathlib import Path

import pytest
import torch

import tickets
from bench.core.errors import ConfigError, TicketbenchError, TicketError
from tickets import SearchContext, Ticket, TrainResult, global_magnitude_masks
from tickets.methods.imp import IMPHparams, imp_schedule
from tickets.testing import ToyTransformer, toy_context

LADDER = (0.3, 0.5, 0.7, 0.9)


def _pruned(t: Ticket) -> int:
    return sum(int((~m).sum()) for m in t.masks.values())


def test_registry_names_and_unknown_method():
    for name in ("imp", "omp", "pretrained_magnitude", "random", "random_matched", "reinit", "shuffle"):
        assert name in tickets.methods
    with pytest.raises(TicketbenchError, match="did you mean 'imp'") as e:
        tickets.get_method("ipm")
    assert "\n" not in str(e.value)


def test_wrong_typed_hparams():
    m = tickets.get_method("imp")
    ctx = toy_context()
    with pytest.raises(ConfigError, match="prune_fraction expects float"):
        m(ctx, IMPHparams(prune_fraction="0.2"))
    with pytest.raises(ConfigError, match="rounds"):
        m(ctx, {"rounds": "many"})
    with pytest.raises(ConfigError, match="unknown hyperparameter 'prune_fractoin'.*prune_fraction"):
        m(ctx, {"prune_fractoin": 0.1})
    with pytest.raises(ConfigError, match="expected IMPHparams"):
        m(ctx, 0.2)
    assert m.make_hparams({"prune_fraction": "0.1", "mode": "of_original"}) == IMPHparams("of_original", 0.1)


def test_imp_schedules():
    assert imp_schedule(IMPHparams(), list(LADDER)) == list(LADDER)
    assert imp_schedule(IMPHparams("of_original", 0.1), [0.3, 0.9]) == [round(0.1 * r, 10) for r in range(1, 10)]
    rem = imp_schedule(IMPHparams("of_remaining", 0.2), [0.5])
    assert rem == [0.2, 0.36, 0.488, 0.5904]
    assert imp_schedule(IMPHparams("of_remaining", 0.2, rounds=2), [0.9]) == [0.2, 0.36]
    with pytest.raises(ConfigError, match="mode"):
        imp_schedule(IMPHparams("sometimes"), [0.5])


def test_imp_ladder_tickets_nested_and_exact():
    ctx = toy_context()
    ts = tickets.methods.get("imp")(ctx)
    n = sum(t.numel() for t in ctx.theta0.values())
    assert [t.metadata["target_sparsity"] for t in ts] == list(LADDER)
    assert [t.metadata["round"] for t in ts] == [1, 2, 3, 4]
    for prev, t in zip(ts, ts[1:]):
        assert all(not (t.masks[k] & ~prev.masks[k]).any() for k in t.masks)  # never revived
    for t, s in zip(ts, LADDER):
        assert _pruned(t) == round(s * n)
        assert t.metadata["source"] == "imp:toy" and t.fingerprint == ctx.fingerprint
        assert t.metadata["extra"]["train_metrics"]["nonzero_pruned"] == 0
    # Later rounds train ticket-masked weights: training really happened (the loss went down).
    assert all(t.metadata["extra"]["train_metrics"]["loss_last"] < t.metadata["extra"]["train_metrics"]["loss_first"]
               for t in ts)


def test_imp_rewinds_to_a_deep_copy_of_theta0():
    """Regression: the rewind copy must not alias tensors that training mutates."""
    theta0 = {"a": torch.randn(6, 5), "b": torch.randn(7)}
    original = {k: v.clone() for k, v in theta0.items()}
    received = []

    def aliasing_train(start, masks):
        received.append({k: v.clone() for k, v in start.items()})
        for k, v in start.items():  # train "in place" and hand back the very same tensors
            v.mul_(masks[k]).add_(torch.randn_like(v) * masks[k])
        return TrainResult(start)

    ctx = SearchContext("toy", "fp", theta0, aliasing_train, "toy", LADDER)
    ts = tickets.methods.get("imp")(ctx)
    assert len(received) == 4
    for start in received:
        for k in original:
            assert torch.equal(start[k], original[k])
    for k in original:
        assert torch.equal(theta0[k], original[k])
    assert ts[-1].sparsity == pytest.approx(0.9, abs=0.02)


def test_imp_real_training_rewinds_each_round_to_theta0_and_late_rewinding():
    ctx = toy_context()
    seen = []
    train = ctx.train
    ctx.train = lambda start, masks: (seen.append({k: v.clone() for k, v in start.items()}), train(start, masks))[1]
    tickets.methods.get("imp")(ctx, {"mode": "ladder"})
    for start in seen:
        assert all(torch.equal(start[k], ctx.theta0[k]) for k in ctx.theta0)

    late = toy_context(rewind_step=2)
    seen = []
    train = late.train
    late.train = lambda start, masks: (seen.append({k: v.clone() for k, v in start.items()}),
                                       res := train(start, masks), rewinds.append(res.rewind))[1]
    rewinds = []
    tickets.methods.get("imp")(late)
    assert all(torch.equal(seen[0][k], late.theta0[k]) for k in late.theta0)
    for start in seen[1:]:  # every later round starts from the step-2 weights of round 1
        assert all(torch.equal(start[k], rewinds[0][k]) for k in late.theta0)
        assert not all(torch.equal(start[k], late.theta0[k]) for k in late.theta0)


def test_omp_and_pretrained_magnitude():
    ctx = toy_context()
    pm = tickets.methods.get("pretrained_magnitude")(ctx)
    assert [t.metadata["source"] for t in pm] == ["pretrained_magnitude"] * 4
    for t, s in zip(pm, LADDER):
        expected = global_magnitude_masks(ctx.theta0, s)
        assert all(torch.equal(t.masks[k], expected[k]) for k in expected)
    calls = []
    train = ctx.train
    ctx.train = lambda start, masks: (calls.append(1), train(start, masks))[1]
    om = tickets.methods.get("omp")(ctx)
    assert len(calls) == 1 and [t.metadata["source"] for t in om] == ["omp:toy"] * 4
    assert any(not torch.equal(a.masks[k], b.masks[k]) for a, b in zip(om, pm) for k in a.masks)
    lw = tickets.methods.get("omp")(ctx, {"scope": "layerwise"})
    for m in lw[1].masks.values():
        assert int((~m).sum()) == round(0.5 * m.numel())
    with pytest.raises(ConfigError, match="scope"):
        tickets.methods.get("omp")(ctx, {"scope": "everywhere"})


def test_random_is_global_and_random_matched_matches_the_base():
    ctx = toy_context()
    rs = tickets.methods.get("random")(ctx)
    n = sum(t.numel() for t in ctx.theta0.values())
    assert [_pruned(t) for t in rs] == [round(s * n) for s in LADDER]
    assert [t.metadata["source"] for t in rs] == ["random"] * 4
    again = tickets.methods.get("random")(ctx)
    assert all(a.content_hash == b.content_hash for a, b in zip(rs, again))  # seeded
    # Global: the per-tensor sparsities vary around the target (a uniform draw over all weights).
    per = [t.metadata["sparsity"]["per_tensor"] for t in rs][2]
    assert len(set(round(v, 6) for v in per.values())) > 1 and all(abs(v - 0.7) < 0.2 for v in per.values())
    lw = tickets.methods.get("random")(ctx, {"scope": "layerwise"})[1]
    for m in lw.masks.values():
        assert int((~m).sum()) == round(0.5 * m.numel())
    with pytest.raises(ConfigError, match="random_matched"):
        tickets.methods.get("random")(ctx, {"scope": "auto"})

    base = tickets.methods.get("imp")(ctx)[2]
    ctx.base_ticket = base
    # The papers' baseline ignores a base ticket (the runner may still pass one): same masks.
    assert [t.content_hash for t in tickets.methods.get("random")(ctx)] == [t.content_hash for t in rs]
    (matched,) = tickets.methods.get("random_matched")(ctx)
    assert matched.metadata["target_sparsity"] == 0.7 and matched.metadata["source"] == "random_matched:toy"
    for k in base.masks:
        assert int((~matched.masks[k]).sum()) == int((~base.masks[k]).sum())
    assert matched.content_hash != base.content_hash
    with pytest.raises(TicketError, match="needs a base ticket"):
        tickets.methods.get("random_matched")(toy_context())


def test_controls_reinit_and_shuffle():
    ctx = toy_context(source="pretrain")
    with pytest.raises(TicketError, match="needs a base ticket"):
        tickets.methods.get("reinit")(ctx)
    base = tickets.methods.get("pretrained_magnitude")(ctx)[1]
    ctx.base_ticket = base
    for name in ("reinit", "shuffle"):
        (t,) = tickets.methods.get(name)(ctx)
        assert t.metadata["weights"] == name and t.metadata["source"] == f"{name}:pretrain"
        assert isinstance(t.metadata["weights_seed"], int)
        assert all(torch.equal(t.masks[k], base.masks[k]) for k in base.masks)
        model = ToyTransformer()
        for k, p in t.apply(model):
            assert (p.detach()[~t.masks[k]] == 0).all()
    other = toy_context(ToyTransformer(d=8))
    other.base_ticket = base
    with pytest.raises(TicketError, match="different|fingerprint"):
        tickets.methods.get("shuffle")(other)


def test_reinit_uses_the_backbones_own_initialiser(tmp_path):
    """Toy presets train from PyTorch's fan-in Linear init, real ones from BERT's N(0, 0.02): the
    control re-draws from the same distribution (a handicapped control would flatter tickets)."""
    ctx = toy_context(source="pretrain")
    ctx.base_ticket = tickets.methods.get("pretrained_magnitude")(ctx)[0]
    reinit = tickets.methods.get("reinit")

    def drawn(t):
        path = tmp_path / f"{t.content_hash}-{t.metadata.get('weights_init')}.safetensors"
        t.save(path)  # the initialiser travels in the file
        model = ToyTransformer()
        return {k: p.detach()[t.masks[k]] for k, p in Ticket.load(path).apply(model)}

    ctx.meta["init"] = "fan_in_uniform"
    (t,) = reinit(ctx)
    assert t.metadata["weights_init"] == "fan_in_uniform" and "weights_std" not in t.metadata
    for k, w in drawn(t).items():
        bound = 1 / ctx.theta0[k].shape[1] ** 0.5
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound  # U(±1/sqrt(fan_in)), not N(0, 0.02)
    ctx.meta["init"] = "normal"
    (t,) = reinit(ctx)
    assert t.metadata["weights_init"] == "normal" and t.metadata["weights_std"] == 0.02
    assert all(abs(float(w.std()) - 0.02) < 0.005 for w in drawn(t).values())
    del ctx.meta["init"]  # without the runner's hint: by preset name
    ctx.backbone = "uniter-base"
    assert reinit(ctx)[0].metadata["weights_init"] == "normal"
    ctx.backbone = "toy-uniter"
    assert reinit(ctx)[0].metadata["weights_init"] == "fan_in_uniform"
    assert reinit(ctx, {"init": "normal", "std": 0.05})[0].metadata["weights_std"] == 0.05
    with pytest.raises(ConfigError, match="init must be"):
        reinit(ctx, {"init": "xavier"})


def _plugin_source() -> str:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "TICKETS.md").read_text()
    block = re.search(r"```python\n(# my_pruning/taylor\.py.*?)```", doc, re.S)
    assert block, "docs/TICKETS.md must hold the plugin template (a ```python block starting '# my_pruning/taylor.py')"
    return block.group(1)


def test_plugin_template_from_the_docs_runs_through_a_search_context():
    namespace: dict = {}
    exec(compile(_plugin_source(), "docs/TICKETS.md:my_pruning/taylor.py", "exec"), namespace)
    assert "taylor" in tickets.methods
    method = tickets.get_method("taylor")
    ctx = toy_context()
    ts = method(ctx)
    n = sum(t.numel() for t in ctx.theta0.values())
    assert [_pruned(t) for t in ts] == [round(s * n) for s in LADDER]
    # It keeps the weights with the largest (gradient x weight)² at θ0 (the toy's batches are all the data).
    grads = ctx.score_fn(ctx.theta0, {k: torch.ones_like(v, dtype=torch.bool) for k, v in ctx.theta0.items()})
    scores = {k: (grads[k] * ctx.theta0[k]) ** 2 for k in grads}
    expected = global_magnitude_masks(scores, 0.5)
    assert all(torch.equal(ts[1].masks[k], expected[k]) for k in expected)
    assert ts[1].metadata["method"] == "taylor" and ts[1].metadata["hparams"] == dataclasses.asdict(method.make_hparams())
    assert ts[1].metadata["source"] == "taylor:toy"
    with pytest.raises(ConfigError):
        method(ctx, {"batches": "two"})
    assert len(_plugin_source().splitlines()) + 9 <= 40  # the module and pyproject.toml: the docs' "≤ 40 lines"
