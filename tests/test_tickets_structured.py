"""Structured tickets (issue 29): heads and FFN neurons as units, and the physically smaller model
that computes the masked model's outputs."""

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

import tickets
from bench.backbones.structured import shrink_bert
from bench.core.errors import TicketError
from tickets import SearchContext
from tickets.structured import bert_layers, pruned_units


def _bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64, vocab_size=60,
                     max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertModel(cfg).eval()


def _context(model, sparsities=(0.5,)):
    named = [(n, p) for n, p in model.named_parameters() if n.startswith("encoder.layer.") and n.endswith(".weight")
             and p.dim() == 2]
    return SearchContext(backbone="bert-test", fingerprint="x", theta0={n: p.detach().clone() for n, p in named},
                         train=None, source="", sparsities=sparsities, meta={"num_heads": 4})


def test_structured_magnitude_removes_the_lowest_norm_heads_and_neurons_per_layer():
    model = _bert()
    ctx = _context(model, (0.25, 0.5, 0.75))
    ts = tickets.get_method("structured_magnitude")(ctx)
    for t in ts:
        s = t.metadata["target_sparsity"]
        heads, neurons = pruned_units(t.masks, 4)
        assert all(len(h) == round(s * 4) for h in heads.values()) and all(len(n) == round(s * 64) for n in neurons.values())
        assert abs(t.sparsity - s) < 1e-9
    # the pruned heads are the ones with the smallest weight norm
    layer = bert_layers(ctx.theta0)[0]
    w = ctx.theta0
    norms = [sum(w[getattr(layer, k)][h * 8:(h + 1) * 8].pow(2).sum() for k in "qkv") + w[layer.o][:, h * 8:(h + 1) * 8].pow(2).sum()
             for h in range(4)]
    order = sorted(range(4), key=lambda h: float(norms[h]))
    assert pruned_units(ts[1].masks, 4)[0][layer.prefix] == sorted(order[:2])


def test_the_shrunk_model_is_smaller_and_computes_the_masked_models_outputs():
    model = _bert()
    t = tickets.get_method("structured_magnitude")(_context(model))[0]
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in masked.named_parameters():
            if n in t.masks:
                p.mul_(t.masks[n])
    small = shrink_bert(copy.deepcopy(masked), t.masks, 4)
    n_small, n_dense = (sum(p.numel() for p in m.parameters()) for m in (small, model))
    assert n_small < n_dense and small.encoder.layer[0].attention.self.query.out_features == 16
    assert small.encoder.layer[1].intermediate.dense.out_features == 32
    ids = torch.randint(0, 60, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 7:] = 0
    with torch.no_grad():
        a = masked(input_ids=ids, attention_mask=mask).last_hidden_state
        b = small(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)


def test_unstructured_masks_are_refused_for_export():
    model = _bert()
    t = tickets.get_method("structured_magnitude")(_context(model))[0]
    bad = {n: m.clone() for n, m in t.masks.items()}
    name = next(iter(bad))
    bad[name][0, 0] = ~bad[name][0, 0]
    with pytest.raises(TicketError, match="is not structured"):
        shrink_bert(copy.deepcopy(model), bad, 4)
    with pytest.raises(TicketError, match="num_heads"):
        tickets.get_method("structured_magnitude")(SearchContext("b", "x", {}, None, "", (0.5,)))


def test_tickets_export_writes_a_structured_ticket_as_the_smaller_model(tmp_path):
    """`ticketbench tickets export` of a structured ticket (50 % of heads and FFN neurons) writes the
    physically smaller BertModel; `load_exported` rebuilds it with the masked model's outputs."""
    from bench.backbones import create_backbone
    from bench.backbones.export import export_ticket
    from bench.backbones.structured import load_exported
    from bench.backbones.uniter import bert_config
    from bench.core.io import file_hash

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["a", "red", "cube", "is", "left", "of", "the"]) + "\n")
    torch.manual_seed(0)
    backbone = create_backbone("toy-uniter", vocab_path=vocab, feat_dim=8)
    theta0 = backbone.save(tmp_path / "out" / "pretrain" / "h0")
    (theta0 / "DONE").write_text(file_hash(theta0 / "model.safetensors") + "\n")
    named = dict(backbone.prunable_parameters())
    heads = backbone.config["num_heads"]
    ctx = SearchContext(backbone=backbone.preset, fingerprint=backbone.fingerprint(),
                        theta0={n: p.detach().clone() for n, p in named.items()}, train=None, source="",
                        sparsities=(0.5,), meta={"num_heads": heads})
    t = tickets.get_method("structured_magnitude")(ctx)[0]
    path = tmp_path / "out" / "tickets" / "h1" / "structured_magnitude__none" / "sparsity-0.50.safetensors"
    t.save(path)
    dest = export_ticket(path, tmp_path / "small")
    small = load_exported(dest)
    masked = BertModel(bert_config(backbone.config)).eval()
    state = {k: v * t.masks[k] if k in t.masks else v for k, v in backbone.state_dict().items()
             if k.split(".")[0] in ("embeddings", "encoder", "pooler")}
    masked.load_state_dict(state, strict=False)
    assert sum(p.numel() for p in small.encoder.parameters()) < 0.6 * sum(p.numel() for p in masked.encoder.parameters())
    ids = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(small(input_ids=ids).last_hidden_state, masked(input_ids=ids).last_hidden_state,
                              atol=1e-5)
    with pytest.raises(TicketError, match="not a structured export"):
        load_exported(tmp_path)


def test_structured_imp_prunes_by_the_fine_tuned_norms_nested_and_rewound():
    """Each round removes the heads and neurons whose *trained* weights are smallest (not θ0's), keeps
    the units pruned before, and the ticket starts from θ0 (no rewind weights)."""
    from tickets.search import TrainResult
    from tickets.structured import unit_scores

    model = _bert()
    ctx = _context(model, sparsities=(0.25, 0.5, 0.75))
    layers = bert_layers(ctx.theta0)
    g = torch.Generator().manual_seed(5)
    factor = {n: torch.rand(w.shape[0], 1, generator=g) + 0.5 for n, w in ctx.theta0.items()}
    calls = []

    def train(start, masks, **kw):  # "fine-tuning" rescales rows: the trained norms differ from θ0's
        calls.append({n: m.clone() for n, m in masks.items()})
        assert all(torch.equal(start[n], ctx.theta0[n]) for n in start)  # rewound to θ0 every round
        return TrainResult({n: start[n] * factor[n] * masks[n] for n in start}, metrics={"steps": 3})

    ctx.train = train
    ts = tickets.get_method("structured_imp")(ctx)
    assert [t.metadata["round"] for t in ts] == [1, 2, 3] and len(calls) == 3
    first_trained = {n: ctx.theta0[n] * factor[n] for n in ctx.theta0}
    h, _ = unit_scores(first_trained, layers[0], 4)
    gone_h, _ = pruned_units(ts[0].masks, 4)
    assert gone_h[layers[0].prefix] == sorted(h.argsort(stable=True)[:1].tolist())  # 25 % of 4 heads, trained norms
    for a, b in zip(ts, ts[1:]):
        assert not (b.masks[layers[0].q] & ~a.masks[layers[0].q]).any()  # nested: pruned stays pruned
    assert all(len(v) == 3 for v in pruned_units(ts[2].masks, 4)[0].values())  # 75 %: one head left per layer
    assert all(t.rewind_weights is None for t in ts) and tickets.get_method("structured_imp").structured
