"""The defining property of every built-in pruning method added for issue 18, on toy models."""

import dataclasses

import pytest
import torch
from torch import nn

import tickets
from bench.core.errors import ConfigError, TicketError
from tickets import SearchContext, TrainResult
from tickets.methods.synflow import synflow_scores
from tickets.search import ones_masks
from tickets.testing import ToyTransformer, linear_context, toy_context, toy_data

NEW = ("snip", "grasp", "synflow", "movement", "layerwise_magnitude", "lr_rewind", "early_bird")


def _pruned(masks: dict) -> int:
    return sum(int((~m).sum()) for m in masks.values())


def _separates(scores: dict, masks: dict) -> bool:
    """Every kept score is >= every pruned score (the mask keeps the top of `scores`)."""
    kept = torch.cat([scores[n][masks[n]].flatten().double() for n in masks])
    gone = torch.cat([scores[n][~masks[n]].flatten().double() for n in masks])
    return gone.numel() == 0 or kept.numel() == 0 or bool(kept.min() >= gone.max())


def _no_training(ctx):
    def refuse(*_, **__):
        raise AssertionError("a one-shot method trained")
    ctx.train = refuse
    return ctx


def test_every_new_method_is_registered_with_documented_hparams_and_a_citation():
    for name in NEW:
        m = tickets.get_method(name)
        assert dataclasses.is_dataclass(m.hparams_cls) and m.hparams_cls.__dataclass_params__.frozen
        assert all(f.metadata.get("help") for f in dataclasses.fields(m.hparams_cls)), name
        doc = __import__(m.fn.__module__, fromlist=["_"]).__doc__
        assert any(str(y) in doc for y in range(2015, 2021)), f"{name}: no citation in the module docstring"
        assert any(str(y) in m.citation for y in range(2015, 2021)), f"{name}: no registered citation"
    # What each declares to the plan: the score-only methods never train, the rest do.
    assert {n for n in NEW if not tickets.get_method(n).trains} == {"snip", "grasp", "synflow"}


def test_snip_scores_are_abs_gradient_times_weight_at_theta0_one_shot():
    ctx = _no_training(toy_context())
    ts = tickets.get_method("snip")(ctx)
    n = sum(t.numel() for t in ctx.theta0.values())
    assert [_pruned(t.masks) for t in ts] == [round(s * n) for s in ctx.sparsities]
    g = ctx.score_fn(ctx.theta0, ones_masks(ctx.theta0))
    scores = {k: (g[k] * ctx.theta0[k]).abs() for k in g}
    assert all(_separates(scores, t.masks) for t in ts)
    assert ts[1].metadata["source"] == "snip:toy" and ts[1].metadata["hparams"]["score_batches"] == 1
    # Averaging over batches: each call asks for a distinct batch index.
    asked = []
    score_fn = ctx.score_fn
    ctx.score_fn = lambda w, m, batch=None: (asked.append(batch), score_fn(w, m))[1]
    tickets.get_method("snip")(ctx, {"score_batches": 3})
    assert asked == [0, 1, 2]


def _exact_hessian_gradient(model, ctx):
    """g and Hg of the toy loss at θ0 by double backward (what GraSP's finite differences approximate)."""
    ctx.score_fn(ctx.theta0, ones_masks(ctx.theta0))  # resets every parameter of the model to θ0
    named = dict(model.prunable_parameters())
    params = [named[n] for n in ctx.theta0]
    tokens, target = toy_data()
    loss = nn.functional.mse_loss(model(tokens), target)
    g = torch.autograd.grad(loss, params, create_graph=True)
    hg = torch.autograd.grad(sum((gi * gi.detach()).sum() for gi in g), params)
    return {n: h.detach() for n, h in zip(ctx.theta0, hg)}


def test_grasp_scores_are_minus_theta_times_hessian_gradient_and_it_keeps_the_lowest():
    model = ToyTransformer()
    ctx = _no_training(toy_context(model))
    from tickets.methods.grasp import GraspHparams, hessian_gradient

    # The toy's ReLUs have kinks: a step of 1e-5 keeps the central difference off them (the default,
    # 1e-4, is for the smooth GELU backbones).
    hp = GraspHparams(fd_step=1e-5)
    _, hg_fd = hessian_gradient(ctx, hp)
    hg = _exact_hessian_gradient(model, ctx)
    flat = lambda d: torch.cat([d[n].flatten() for n in ctx.theta0])  # noqa: E731
    err = (flat(hg_fd) - flat(hg)).abs()
    assert float(err.max()) < 0.01 * float(flat(hg).abs().max()) and float(err.mean()) < 0.01 * float(flat(hg).abs().mean())
    ts = tickets.get_method("grasp")(ctx, hp)
    s = {n: -w * hg[n] for n, w in ctx.theta0.items()}  # GraSP's S(−θ); it removes the highest
    low = float(torch.quantile(flat(s), 0.05))
    for t in ts:
        assert sum(int((~t.masks[n] & (s[n] < low)).sum()) for n in s) == 0  # the lowest 5 % of S all kept
        assert _agreement({n: -v for n, v in s.items()}, t.masks) > 0.995    # = the exact top-k of −S


def _agreement(scores, masks) -> float:
    """Fraction of weights on the right side of the exact top-k split (finite differences blur ties)."""
    from tickets.magnitude import masks_with_counts

    flat = torch.cat([scores[n].flatten() for n in masks])
    k = _pruned(masks)
    low = flat - flat.min()
    exact = masks_with_counts({"all": low}, {"all": k})["all"]
    got = torch.cat([masks[n].flatten() for n in masks])
    return float((exact == got).double().mean())


def test_synflow_is_data_free_and_its_scores_are_the_flow_products():
    ctx = linear_context()  # its train and score_fn raise: SynFlow must not touch data
    ws = [ctx.theta0[f"layers.{i}.weight"].double().abs() for i in range(3)]
    ones = torch.ones(ws[0].shape[1], dtype=torch.float64)
    scores = synflow_scores(ctx, ones_masks(ctx.theta0))
    R = float(ws[2].sum(0) @ ws[1] @ ws[0] @ ones)
    for i in range(3):
        into = ones
        for w in ws[:i]:
            into = w @ into                      # flow arriving at layer i's inputs: |W_{i-1}|…|W_1|1
        out = torch.ones(ws[-1].shape[0], dtype=torch.float64)
        for w in reversed(ws[i + 1:]):
            out = out @ w                        # paths from layer i's outputs: 1ᵀ|W_L|…|W_{i+1}|
        expected = out[:, None] * ws[i] * into[None, :]
        assert torch.allclose(scores[f"layers.{i}.weight"].double(), expected, rtol=1e-5)
        assert float(scores[f"layers.{i}.weight"].sum()) == pytest.approx(R, rel=1e-5)  # conservation


def test_synflow_prunes_iteratively_rescoring_the_masked_network_and_never_revives():
    ctx = linear_context(sparsities=(0.8,))
    seen = []
    flow = ctx.flow_fn
    ctx.flow_fn = lambda w, m: (seen.append({k: v.clone() for k, v in m.items()}), flow(w, m))[1]
    (t,) = tickets.get_method("synflow")(ctx, {"iterations": 10})
    assert len(seen) == 10 and _pruned(seen[0]) == 0
    for a, b in zip(seen, seen[1:]):
        assert all(not (b[k] & ~a[k]).any() for k in a) and _pruned(b) > _pruned(a)
    assert _pruned(t.masks) == round(0.8 * 41)
    assert _separates(synflow_scores(ctx, seen[-1]), t.masks)
    # Every layer keeps a path: iterative SynFlow avoids layer collapse on this net.
    assert all(m.any() for m in t.masks.values())


def test_movement_scores_accumulate_minus_weight_times_gradient_during_fine_tuning():
    model = ToyTransformer()
    ctx = toy_context(model, steps=4)
    theta0 = {k: v.clone() for k, v in ctx.theta0.items()}
    others0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    ts = tickets.get_method("movement")(ctx)
    # Independent replay of the toy fine-tuning: plain SGD, adding −w·g before every step.
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(others0[k])
    named = dict(model.prunable_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tokens, target = toy_data()
    scores = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in theta0.items()}
    for _ in range(4):
        opt.zero_grad()
        nn.functional.mse_loss(model(tokens), target).backward()
        for k in scores:
            scores[k] -= named[k].detach().double() * named[k].grad.double()
        opt.step()
    n = sum(v.numel() for v in theta0.values())
    for t, s in zip(ts, ctx.sparsities):
        assert _pruned(t.masks) == round(s * n) and _separates(scores, t.masks)
    mag = tickets.get_method("omp")(toy_context(ToyTransformer(), steps=4))
    assert any(not torch.equal(a.masks[k], b.masks[k]) for a, b in zip(ts, mag) for k in a.masks)


def test_movement_keeps_weights_moving_away_from_zero():
    """One SGD step: a weight with a positive score is one whose magnitude grew."""
    ctx = toy_context(steps=1)
    start = {k: v.clone() for k, v in ctx.theta0.items()}
    trained = {}
    train = ctx.train
    ctx.train = lambda s, m, on_grads=None: (r := train(s, m, on_grads=on_grads), trained.update(r.weights))[0]
    (t,) = tickets.get_method("movement")(ctx.__class__(**{**ctx.__dict__, "sparsities": (0.5,)}))
    for k in start:
        grew = trained[k].abs() > start[k].abs()
        shrank = trained[k].abs() < start[k].abs()
        # half the weights are kept: more of the growing ones than of the shrinking ones
        assert (t.masks[k] & grew).sum() / grew.sum().clamp(min=1) >= (t.masks[k] & shrank).sum() / shrank.sum().clamp(min=1)


def test_movement_gradual_continues_from_pruned_trained_weights():
    ctx = toy_context(steps=3)
    starts = []
    train = ctx.train
    ctx.train = lambda s, m, on_grads=None: (starts.append({k: v.clone() for k, v in s.items()}),
                                             train(s, m, on_grads=on_grads))[1]
    ts = tickets.get_method("movement")(ctx, {"gradual": True})
    assert len(starts) == 4 and [t.metadata["round"] for t in ts] == [1, 2, 3, 4]
    for prev, t in zip(ts, ts[1:]):
        assert all(not (t.masks[k] & ~prev.masks[k]).any() for k in t.masks)
    assert not all(torch.equal(starts[1][k], ctx.theta0[k] * ts[0].masks[k]) for k in ctx.theta0)


def test_layerwise_magnitude_prunes_every_tensor_to_the_same_sparsity():
    ctx = toy_context()
    trained = {}
    train = ctx.train
    ctx.train = lambda s, m, **kw: (r := train(s, m), trained.update(r.weights))[0]
    ts = tickets.get_method("layerwise_magnitude")(ctx)
    for t, s in zip(ts, ctx.sparsities):
        for k, m in t.masks.items():
            assert int((~m).sum()) == round(s * m.numel())
            assert _separates({k: trained[k].abs()}, {k: m})
    (pre,) = tickets.get_method("layerwise_magnitude")(_no_training(toy_context(sparsities=(0.5,))), {"trained": False})
    assert all(_separates({k: v.abs()}, {k: pre.masks[k]}) for k, v in toy_context().theta0.items())
    glob = tickets.get_method("omp")(toy_context())[3]
    assert len({round(float((~m).double().mean()), 2) for m in glob.masks.values()}) > 1  # global is uneven


def test_lr_rewind_retrains_from_trained_weights_not_theta0():
    ctx = toy_context()
    starts, results = [], []
    train = ctx.train
    ctx.train = lambda s, m, **kw: (starts.append({k: v.clone() for k, v in s.items()}),
                                    r := train(s, m), results.append(r))[1]
    ts = tickets.get_method("lr_rewind")(ctx)
    assert len(starts) == 4 and all(torch.equal(starts[0][k], ctx.theta0[k]) for k in ctx.theta0)
    for r in range(1, 4):
        mask = ts[r - 1].masks
        assert all(torch.equal(starts[r][k], results[r - 1].weights[k] * mask[k]) for k in mask)
        assert not all(torch.equal(starts[r][k], ctx.theta0[k] * mask[k]) for k in mask)
        assert _separates({k: v.abs() for k, v in results[r].weights.items()}, ts[r].masks)
    for prev, t in zip(ts, ts[1:]):
        assert all(not (t.masks[k] & ~prev.masks[k]).any() for k in t.masks)
    imp = tickets.get_method("imp")(toy_context())
    assert any(not torch.equal(a.masks[k], b.masks[k]) for a, b in zip(ts[1:], imp[1:]) for k in a.masks)
    # IMP's fraction modes: the plan learns the sparsities the tickets will carry
    frac = {"mode": "of_original", "prune_fraction": 0.25}
    assert tickets.get_method("lr_rewind").target_sparsities(frac, (0.5, 0.75)) == (0.25, 0.5, 0.75)
    got = [t.metadata["target_sparsity"] for t in tickets.get_method("lr_rewind")(toy_context(), frac)]
    assert got == [0.25, 0.5, 0.75]  # the toy ladder tops at 90 %: a fourth round would prune everything


def _scripted_context(weights_per_step: list[dict], sparsities=(0.5,)):
    """A context whose train replays fixed weights, honouring on_grads's stop request."""
    theta0 = weights_per_step[0]
    calls = {"steps": 0}

    def train(start, masks, on_grads=None):
        for w in weights_per_step:
            calls["steps"] += 1
            if on_grads is not None and on_grads(w, {k: torch.zeros_like(v) for k, v in w.items()}):
                break
        return TrainResult(weights_per_step[calls["steps"] - 1], metrics={"steps": calls["steps"]})

    return SearchContext("toy", "fp", theta0, train, "toy", sparsities), calls


def test_early_bird_stops_when_consecutive_masks_agree():
    g = torch.Generator().manual_seed(0)
    noisy = [{"w": torch.randn(20, 20, generator=g)} for _ in range(10)]  # masks keep changing
    stable = [{"w": noisy[-1]["w"] + 1e-4 * i} for i in range(1, 30)]    # then the ranking freezes
    ctx, calls = _scripted_context(noisy + stable)
    (t,) = tickets.get_method("early_bird")(ctx, {"interval": 2, "threshold": 0.05, "patience": 3})
    drawn = t.metadata["extra"]["drawn_at_step"]
    assert drawn is not None and 12 <= drawn <= 20 and calls["steps"] == drawn  # training stopped there
    from tickets import global_magnitude_masks

    assert torch.equal(t.masks["w"], global_magnitude_masks((noisy + stable)[drawn - 1], 0.5)["w"])
    assert all(d < 0.05 for d in t.metadata["extra"]["distances"][-3:])
    ctx, calls = _scripted_context(noisy)
    (never,) = tickets.get_method("early_bird")(ctx, {"interval": 1, "threshold": 0.0})
    assert never.metadata["extra"]["drawn_at_step"] is None and calls["steps"] == 10
    with pytest.raises(ConfigError):
        tickets.get_method("early_bird")(ctx, {"interval": 0})


def test_early_bird_on_real_toy_training_saves_steps():
    ctx = toy_context(steps=60)
    ts = tickets.get_method("early_bird")(ctx, {"interval": 2, "threshold": 0.05, "patience": 2})
    extra = ts[0].metadata["extra"]
    assert extra["drawn_at_step"] is not None and extra["train_metrics"]["steps"] == extra["drawn_at_step"] < 60


def test_gradient_and_flow_methods_say_what_context_they_miss():
    ctx = toy_context()
    ctx.score_fn = None
    ctx.flow_fn = None
    for name, hook in (("snip", "score_fn"), ("grasp", "score_fn"), ("synflow", "flow_fn")):
        with pytest.raises(TicketError, match=hook):
            tickets.get_method(name)(ctx)


def test_methods_config_searches_every_built_in_method_with_two_seeds():
    from bench.config import load_config
    from bench.plan import build_plan

    plan = build_plan(load_config("methods"))
    sources = {str(s.source) for s in plan.searches}
    built_in = {n for n, m in tickets.methods.items() if (m.fn.__module__ or "").startswith("tickets.methods.")}
    controls = {n for n in built_in if tickets.get_method(n).base}  # they transform a ticket: no rivals
    assert controls >= {"reinit", "shuffle"} and built_in - {s.source.method for s in plan.searches} == controls
    assert plan.config.matrix.seeds >= 2 and plan.config.matrix.dense_seeds >= 2  # testable
    # ranked only where dense is converged and above chance: the check runs, every target task has its own tickets
    assert plan.config.matrix.convergence_check
    assert {f"imp:{t}" for t in plan.config.matrix.tasks} | {"imp:pretrain"} <= sources  # like baselines
    cells = {(str(c.source), c.task) for c in plan.cells}
    assert all((s, t) in cells for s in sources for t in plan.config.matrix.tasks)


def test_adding_a_method_keeps_the_stored_searches():
    """A search's content address does not change when another method is added to the config, so
    adding snip:vqa (or a plugin) re-uses the stored IMP searches; the search's own settings change it."""
    from bench.config import apply_overrides, load_config
    from bench.plan import build_plan

    def ids(*sets):
        plan = build_plan(apply_overrides(load_config("smoke"), list(sets)))
        return {str(s.source): plan.search_id(s, "theta0hash", "datahash") for s in plan.searches}

    before = ids()
    after = ids("find.one_shot=omp:vqa,pretrained_magnitude,snip:vqa,synflow")
    assert {k: after[k] for k in before} == before and {"snip:vqa", "synflow"} <= set(after)
    assert ids("find.steps=7")["imp:vqa"] != before["imp:vqa"]
    assert ids("find.hparams=snip.score_batches=2", "find.one_shot=snip:vqa")["snip:vqa"] != after["snip:vqa"]


def test_training_loop_on_grads_sees_masked_gradients_and_can_stop():
    """The runner's hook for movement pruning and early-bird tickets (bench.training.train(callbacks=[OnGrads(fn)]))."""
    from types import SimpleNamespace

    from bench.core.settings import TrainSettings
    from bench.training import OnGrads, train
    from tickets import MaskEnforcer
    from tickets.testing import ToyLinear

    model = ToyLinear()
    named = model.prunable_parameters()
    masks = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) > 0.5 for n, p in named}
    examples = [SimpleNamespace(texts=("a b",), x=torch.randn(4)) for _ in range(16)]

    def loss_fn(batch):
        return model(torch.stack([e.x for e in batch])).pow(2).mean()

    seen = []

    def on_grads():
        seen.append({n: p.grad.clone() for n, p in named})
        return len(seen) == 3

    log = train(model, loss_fn, examples, TrainSettings(steps=10, batch_size=4, lr=1e-2, bf16=False),
                enforcer=MaskEnforcer(named, masks), head_prefixes=(), callbacks=[OnGrads(on_grads)])
    assert log.steps == 3 and len(seen) == 3
    for g in seen:
        assert all((g[n][~masks[n]] == 0).all() and g[n][masks[n]].abs().sum() > 0 for n in masks)
