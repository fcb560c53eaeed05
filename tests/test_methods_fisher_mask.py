"""Kwon et al. 2022's Fisher-based structured mask search (`fisher_mask`) against its definition: the
mask gradient read off the weight gradients equals autograd's through an explicit head / neuron mask,
and the search keeps the most Fisher importance within the weight budget (brute force on a small case)."""

import itertools

import pytest
import torch
from transformers import BertConfig, BertModel

import tickets
from bench.core.errors import ConfigError
from tickets import SearchContext
from tickets.methods.fisher_mask import mask_gradients, search_mask
from tickets.structured import bert_layers, pruned_units

HEADS = 4


def _bert():
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=16, num_attention_heads=HEADS, num_hidden_layers=2, intermediate_size=12,
                     vocab_size=30, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertModel(cfg).eval()


IDS = torch.randint(0, 30, (3, 6), generator=torch.Generator().manual_seed(1))


def _loss(model):
    return model(input_ids=IDS).last_hidden_state.pow(2).mean()


def _named(model):
    return {n: p for n, p in model.named_parameters() if n.startswith("encoder.layer.") and n.endswith(".weight")
            and p.dim() == 2}


def test_mask_gradient_equals_autograd_through_an_explicit_mask():
    model = _bert()
    named = _named(model)
    layer = bert_layers(named)[1]
    modules = dict(model.named_modules())
    d = 16 // HEADS
    m_head = torch.ones(HEADS, requires_grad=True)
    m_neur = torch.ones(12, requires_grad=True)
    attn_out, ff_out = modules[layer.o[:-len(".weight")]], modules[layer.ff_out[:-len(".weight")]]
    h1 = attn_out.register_forward_pre_hook(lambda mod, a: (a[0] * m_head.repeat_interleave(d),))
    h2 = ff_out.register_forward_pre_hook(lambda mod, a: (a[0] * m_neur,))
    loss = _loss(model)
    gm_h, gm_n = torch.autograd.grad(loss, [m_head, m_neur], retain_graph=True)
    grads = dict(zip(named, torch.autograd.grad(loss, list(named.values()))))
    h1.remove()
    h2.remove()
    head, neuron = mask_gradients({n: p.detach() for n, p in named.items()}, grads, layer, HEADS)
    assert torch.allclose(head.float(), gm_h, atol=1e-6) and torch.allclose(neuron.float(), gm_n, atol=1e-6)


def test_search_keeps_the_most_fisher_importance_within_the_budget():
    g = torch.Generator().manual_seed(3)
    fisher = {p: (torch.rand(3, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64))
              for p in ("l0", "l1")}
    head_cost, neuron_cost = 5, 2
    units = [("h", p, i) for p in fisher for i in range(3)] + [("n", p, j) for p in fisher for j in range(4)]
    for budget in (10, 17, 23, 31, 40):
        best = -1.0
        for keep in itertools.product((0, 1), repeat=len(units)):
            kept = [u for u, k in zip(units, keep) if k]
            if any(not any(u[0] == "h" and u[1] == p for u in kept) for p in fisher):
                continue  # every layer keeps a head
            cost = sum(head_cost if u[0] == "h" else neuron_cost for u in kept)
            if cost <= max(budget, head_cost * 2):
                best = max(best, sum(float(fisher[u[1]][0 if u[0] == "h" else 1][u[2]]) for u in kept))
        gone_h, gone_n = search_mask(fisher, head_cost, neuron_cost, budget)
        got = sum(float(f) for p in fisher for i, f in enumerate(fisher[p][0]) if i not in gone_h[p]) + \
            sum(float(f) for p in fisher for j, f in enumerate(fisher[p][1]) if j not in gone_n[p])
        cost = sum(head_cost * (3 - len(gone_h[p])) + neuron_cost * (4 - len(gone_n[p])) for p in fisher)
        assert abs(got - best) < 1e-12 and cost <= max(budget, head_cost * 2), budget
        assert all(len(gone_h[p]) < 3 for p in fisher)


def test_fisher_mask_tickets_are_structured_and_within_budget():
    model = _bert()
    named = _named(model)

    def score_fn(weights, masks, batch=None):
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(weights[n] * masks[n])
        model.zero_grad()
        _loss(model).backward()
        return {n: p.grad.detach().clone() for n, p in named.items()}

    ctx = SearchContext(backbone="bert-test", fingerprint="x", theta0={n: p.detach().clone() for n, p in named.items()},
                        train=None, source="vqa", sparsities=(0.3, 0.6), meta={"num_heads": HEADS}, score_fn=score_fn)
    ts = tickets.get_method("fisher_mask")(ctx, {"score_batches": 2})
    assert [t.metadata["target_sparsity"] for t in ts] == [0.3, 0.6]
    for t in ts:
        gone_h, gone_n = pruned_units(t.masks, HEADS)  # whole heads and neurons only
        kept = sum(int(t.masks[n].sum()) for n in t.masks)
        assert kept <= (1 - t.metadata["target_sparsity"]) * sum(m.numel() for m in t.masks.values()) + 1e-9
        assert all(len(v) < HEADS for v in gone_h.values()) and t.metadata["extra"]["structured"]["num_heads"] == HEADS
    assert tickets.get_method("fisher_mask").structured
    with pytest.raises(ConfigError, match="score_batches must be >= 1"):
        tickets.get_method("fisher_mask")(ctx, {"score_batches": 0})
