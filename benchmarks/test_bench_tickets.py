"""Tickets at BERT-base size: global magnitude masks vs torch.nn.utils.prune, and ticket file size.

BERT-base's prunable set: 12 layers × (4 × 768×768 attention + 768×3072 + 3072×768 FFN) = 84.9M
weights. Weights are Gaussian rounded to 1/16, so thousands of weights tie at any threshold.
"""

from __future__ import annotations

import io

import pytest
import torch
from conftest import benchmark_best, best_times, sized
from torch import nn
from torch.nn.utils import prune

from tickets import Ticket, global_magnitude_masks
from tickets.fingerprint import fingerprint_of

SPARSITY = 0.7
LEVELS = 16  # weights rounded to multiples of 1/16: heavy ties at the threshold


def bert_base_shapes() -> dict[str, tuple[int, int]]:
    """BERT-base's prunable shapes (quick mode: 2 layers of width 32, the same structure)."""
    layers, d = sized((12, 768), (2, 32))
    shapes = {}
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"] = (d, d)
        shapes[p + "intermediate.dense.weight"] = (4 * d, d)
        shapes[p + "output.dense.weight"] = (d, 4 * d)
    return shapes


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {n: torch.randn(s, generator=g).mul_(LEVELS).round_().div_(LEVELS) for n, s in bert_base_shapes().items()}


@pytest.fixture(scope="module")
def masks(weights) -> dict[str, torch.Tensor]:
    return global_magnitude_masks(weights, SPARSITY)


def torch_prune(weights: dict[str, torch.Tensor]) -> list[nn.Linear]:
    """BERT-Tickets' way: global_unstructured(L1Unstructured) over Linear modules sharing `weights`."""
    mods = []
    for w in weights.values():
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight = nn.Parameter(w, requires_grad=False)
        mods.append(lin)
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured, amount=SPARSITY)
    return mods


def test_global_magnitude_vs_torch_prune(benchmark, record_ratio, weights):
    n = sum(w.numel() for w in weights.values())
    k = round(SPARSITY * n)
    assert n == sized(84_934_656, 2 * 12 * 32 * 32)
    out = {}

    def ours():
        out["ours"] = global_magnitude_masks(weights, SPARSITY)

    def anchor():
        out["torch"] = torch_prune(weights)

    # torch's takes 10-40 s here: one round each, back to back, so both see the same load; the ratio
    # uses these two. pytest-benchmark's extra rounds of ours only fill its own table.
    t = best_times({"ours": ours, "torch": anchor}, rounds=1)
    benchmark.pedantic(ours, rounds=2, iterations=1)
    t_ours = t["ours"]

    ours_pruned = sum(int((~m).sum()) for m in out["ours"].values())
    torch_masks = [m.weight_mask for m in out["torch"]]
    assert ours_pruned == k
    assert sum(int((m == 0).sum()) for m in torch_masks) == k
    # Off the tied threshold magnitude both prune exactly the same weights.
    v = max(float(w[~m].abs().max()) for w, m in zip(weights.values(), out["ours"].values()))
    for w, m, tm in zip(weights.values(), out["ours"].values(), torch_masks):
        off = w.abs() != v
        assert torch.equal(m[off], tm[off].bool())
    ratio = t["torch"] / t_ours
    record_ratio(f"global magnitude mask, {n / 1e6:.1f}M weights, s={SPARSITY}", t_ours, t["torch"],
                 goal="≥ 4×", met=ratio >= 4, note=f"exactly {k} pruned by both; best of ours {benchmark_best(benchmark, t_ours):.3g} s")


def test_ticket_file_bits_per_weight(benchmark, record_ratio, tmp_path, masks):
    n = sum(m.numel() for m in masks.values())
    ticket = Ticket.build(masks, backbone="bert-base-shapes", fingerprint=fingerprint_of(masks.items()),
                          source="bench", method="magnitude", target_sparsity=SPARSITY)
    path = tmp_path / "ticket.safetensors"
    benchmark.pedantic(ticket.save, args=(path,), rounds=2, iterations=1)
    ours_bits = path.stat().st_size * 8 / n
    buf = io.BytesIO()
    torch.save({name: m.float() for name, m in masks.items()}, buf)  # BERT-Tickets' mask file
    anchor_bits = buf.getbuffer().nbytes * 8 / n
    assert Ticket.load(path).content_hash == ticket.content_hash
    record_ratio(f"ticket file, bits per prunable weight ({n / 1e6:.1f}M)", ours_bits, anchor_bits,
                 ratio=anchor_bits / ours_bits, unit="bits", goal="≤ 1.01 bits vs 32", met=ours_bits <= 1.01,
                 note=f"{path.stat().st_size / 1e6:.2f} MB vs {buf.getbuffer().nbytes / 1e6:.1f} MB")
