"""A structured ticket exported as a physically smaller model: CPU latency against the dense model.

BERT-base-wide layers (hidden 768, 12 heads, FFN 3072; 4 layers to keep the run short), batch 8 ×
128 tokens, one thread. `structured_magnitude` removes the fraction s of heads and FFN neurons of every
layer; `shrink_bert` cuts them out, and the smaller model is saved and read back as `ticketbench
tickets export` writes it (`load_exported`). Dense and shrunk models are timed round-robin in the
same run (best of the rounds), and the shrunk model's outputs are checked against the masked model's
first.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import best_times, quick, sized
from transformers import BertConfig, BertModel

import tickets
from bench.backbones.structured import STRUCTURED_FILE, load_exported, removed_units, shrink_bert
from tickets import SearchContext

SPARSITIES = (0.25, 0.5, 0.75)


@pytest.fixture(scope="module")
def dense():
    hidden, heads, layers, ff = sized((768, 12, 4, 3072), (32, 4, 2, 64))
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers, intermediate_size=ff,
                     vocab_size=1000, max_position_embeddings=160, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertModel(cfg).eval(), heads


def _tickets(model, heads):
    named = {n: p.detach().clone() for n, p in model.named_parameters()
             if n.startswith("encoder.layer.") and n.endswith(".weight") and p.dim() == 2}
    ctx = SearchContext(backbone="bert", fingerprint="x", theta0=named, train=None, source="", sparsities=SPARSITIES,
                        meta={"num_heads": heads})
    return tickets.get_method("structured_magnitude")(ctx)


def test_structured_ticket_latency_vs_dense(dense, record_ratio, tmp_path):
    model, heads = dense
    batch, seq = sized((8, 128), (2, 8))
    ids = torch.randint(0, 1000, (batch, seq), generator=torch.Generator().manual_seed(0))
    for t in _tickets(model, heads):
        masked = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in masked.named_parameters():
                if n in t.masks:
                    p.mul_(t.masks[n])
        # Through the export's files: save_pretrained of the smaller model + its removed units, read back
        # by load_exported (what `ticketbench tickets export` writes and a user loads).
        shrunk = shrink_bert(copy.deepcopy(masked), t.masks, heads)
        folder = tmp_path / f"s{round(100 * t.metadata['target_sparsity'])}"
        shrunk.save_pretrained(str(folder))
        (folder / STRUCTURED_FILE).write_text(json.dumps({"structured": removed_units(t.masks, heads)}))
        small = load_exported(folder)
        with torch.inference_mode():
            assert torch.allclose(masked(input_ids=ids).last_hidden_state, small(input_ids=ids).last_hidden_state,
                                  atol=1e-4)

            def run(m):
                return lambda: m(input_ids=ids)

            best = best_times({"dense": run(model), "small": run(small)}, rounds=sized(7, 1))
        s = t.metadata["target_sparsity"]
        params = sum(p.numel() for p in small.encoder.parameters()) / sum(p.numel() for p in model.encoder.parameters())
        record_ratio(f"structured ticket {s:.0%} of heads and FFN neurons removed, CPU latency (batch {batch}×{seq})",
                     best["small"], best["dense"], goal="faster than dense at 50 %" if s == 0.5 else "",
                     met=(best["dense"] / best["small"] > 1.0) if s == 0.5 and not quick() else None,
                     note=f"encoder parameters {params:.0%} of dense; throughput ×{best['dense'] / best['small']:.2f}; "
                          "same outputs as the masked model (atol 1e-4)")
