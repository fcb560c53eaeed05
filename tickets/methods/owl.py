"""OWL: outlier-weighted layer-wise sparsity, an allocator over any score-based method.

Yin, Wu, Zhang, Hsieh, Wang, Jia, Pechenizkiy, Liang, Wang & Liu, "Outlier Weighed Layerwise Sparsity
(OWL): A Missing Secret Sauce for Pruning LLMs to High Sparsity", ICML 2024. A layer's outlier ratio
(LOD) is the fraction of its scores above M × their mean (the scores of every linear of the layer
together); layers with more outliers get a lower sparsity: the LODs are mapped linearly onto
[S − λ, S + λ] (most outliers → S − λ) around the target S. Each tensor is then pruned at its layer's
sparsity by the score method's own scores, per output row (`group=row`, as the reference does with
Wanda) or per tensor.

`score` names any method registered with a score function (`register_method(..., scores=)`: wanda,
ria, snip, pretrained_magnitude, …); its calibration settings are OWL's `calib_samples` / `calib_seed`.
A layer is a transformer block (`tickets.methods.calibration.block_of`). Departure: where layers differ in
size (a prunable tensor outside the numbered blocks), the allocation is centred on S weighted by the
layers' sizes so the ticket's overall sparsity is S (the reference's LLM layers are all equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from bench.core.errors import ConfigError, TicketError
from bench.core.hparams import hp
from tickets.methods.calibration import CalibrationHparams, block_of, check_group, select
from tickets.methods.common import ladder
from tickets.registry import get_method, register_method
from tickets.search import SearchContext


@dataclass(frozen=True)
class OWLHparams(CalibrationHparams):
    score: str = hp("wanda", "the score-based method whose scores OWL allocates over and prunes by "
                             "(any method registered with a score function: wanda, ria, snip, pretrained_magnitude)")
    outlier_m: float = hp(5.0, "M: a score is an outlier above M × its layer's mean score (the paper's M = 5)")
    lam: float = hp(0.08, "λ: layer sparsities span [S − λ, S + λ] (the paper's 0.08)")
    group: str = hp("row", "comparison group within a tensor: row (per output row, as with Wanda) or layer")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.lam, (int, float)) and not 0 <= self.lam < 1:
            raise ConfigError(f"method 'owl': lam must be in [0, 1), found {self.lam}")
        if isinstance(self.outlier_m, (int, float)) and not self.outlier_m > 0:
            raise ConfigError(f"method 'owl': outlier_m must be > 0, found {self.outlier_m}")
        check_group("owl", self.group)


def outlier_ratios(scores: dict, m: float) -> dict[str, float]:
    """Per layer (block): the fraction of its scores above m × their mean."""
    by_block: dict[str, list] = {}
    for n, s in scores.items():
        by_block.setdefault(block_of(n), []).append(s.detach().double().reshape(-1))
    out = {}
    for b, parts in by_block.items():
        flat = torch.cat(parts)
        out[b] = float((flat > m * flat.mean()).double().mean())
    return out


def owl_allocation(scores: dict, sparsity: float, m: float, lam: float) -> tuple[dict, dict]:
    """({tensor name: its layer's sparsity}, {layer: outlier ratio}): the LODs mapped linearly onto
    [S − λ, S + λ], more outliers → lower sparsity, centred so the size-weighted mean is S."""
    lod = outlier_ratios(scores, m)
    size = {b: 0 for b in lod}
    for n, s in scores.items():
        size[block_of(n)] += s.numel()
    lo, hi = min(lod.values()), max(lod.values())
    spread = {b: (v - lo) / (hi - lo) * 2 * lam if hi > lo else 0.0 for b, v in lod.items()}
    centre = sum(spread[b] * size[b] for b in lod) / sum(size.values())
    per_layer = {b: sparsity - (spread[b] - centre) for b in lod}
    bad = [b for b, s in per_layer.items() if not 0.0 <= s < 1.0]
    if bad:
        raise TicketError(f"method 'owl': layer '{bad[0]}' would get sparsity {per_layer[bad[0]]:.3f} at target "
                          f"{sparsity:g} with lam={lam}: lower find.hparams.owl.lam")
    return {n: per_layer[block_of(n)] for n in scores}, lod


@register_method("owl", OWLHparams, trains=False, family="calibration",
                 citation="Yin et al., ICML 2024 (OWL: outlier-weighted layer-wise sparsity)")
def owl(ctx: SearchContext, hparams: OWLHparams) -> list:
    """Score with `score`, allocate each layer's sparsity by its outlier ratio, prune each tensor at its
    layer's sparsity; one ticket per ladder sparsity."""
    check_group("owl", hparams.group)
    scorer = get_method(hparams.score)
    if scorer.scores is None:
        raise ConfigError(f"method 'owl': score method '{hparams.score}' has no score function (register it with "
                          "scores=...; wanda, ria, snip and pretrained_magnitude have one)")
    shared = {f.name: getattr(hparams, f.name) for f in dataclasses.fields(CalibrationHparams)}
    known = {f.name for f in dataclasses.fields(scorer.hparams_cls)}
    scores = scorer.scores(ctx, scorer.make_hparams({k: v for k, v in shared.items() if k in known}))
    tickets = []
    for s in ladder(ctx, "owl"):
        per_tensor, lod = owl_allocation(scores, s, hparams.outlier_m, hparams.lam)
        layer = {block_of(n): round(v, 6) for n, v in per_tensor.items()}
        tickets.append(ctx.make_ticket(select(ctx, scores, per_tensor, hparams.group), method="owl",
                                       hparams=hparams, target_sparsity=s,
                                       extra={"layer_sparsity": layer, "outlier_ratio": lod,
                                              "calibration": {"samples": hparams.calib_samples,
                                                              "seed": hparams.calib_seed,
                                                              "score": hparams.score}}))
    return tickets
