"""Task and pre-training heads on top of a backbone's Encoding. Heads are never pruned."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """Linear -> GELU -> LayerNorm -> Linear (the answer-classifier shape UNITER and LXMERT use)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClassifyHead(nn.Module):
    """Logits over a label space from the pooled output; with n_images 2 (NLVR2) the pooled outputs
    of the two (text, image) encodings are concatenated."""

    def __init__(self, hidden: int, num_labels: int, n_images: int = 1):
        super().__init__()
        self.n_images = n_images
        self.mlp = MLP(hidden * n_images, hidden * 2, num_labels)

    def init_prior(self, p: float) -> None:
        """Start every sigmoid output at probability p (output bias logit(p)), as detection heads do
        for many independent labels: a soft-BCE head started at 0.5 first spends its steps pushing all
        answers down, under gradient clipping (measured on toyland VQA: docs/ARCHITECTURE.md)."""
        with torch.no_grad():
            self.mlp.net[-1].bias.fill_(math.log(p / (1.0 - p)))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B * n_images, H], image-major ([all first images; all second images]) -> [B, L]."""
        b = pooled.shape[0] // self.n_images
        joined = torch.cat([pooled[i * b:(i + 1) * b] for i in range(self.n_images)], dim=-1)
        return self.mlp(joined)


class RegionHead(nn.Module):
    """One logit per image token; padded regions get -inf-like logits, so softmax is over real regions."""

    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = MLP(hidden, hidden, 1)

    def forward(self, image_tokens: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(image_tokens).squeeze(-1)
        return logits.masked_fill(~image_mask, torch.finfo(logits.dtype).min)


class ScoreHead(nn.Module):
    """One scalar per pooled encoding: image-text matching (itm) and multiple-choice candidates."""

    def __init__(self, hidden: int, mlp: bool = False):
        super().__init__()
        self.proj = MLP(hidden, hidden, 1) if mlp else nn.Linear(hidden, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.proj(pooled).squeeze(-1)


class MLMHead(nn.Module):
    """Masked-language-model head; its decoder weight *is* the backbone's word-embedding matrix."""

    def __init__(self, word_embeddings: nn.Embedding, hidden: int):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12))
        # A plain list keeps the shared table out of this module's state dict (it is saved with the
        # backbone), while the decoder still reads the live, trained weights.
        self._tied = [word_embeddings]
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden_states) @ self._tied[0].weight.t() + self.bias


class MRMHead(nn.Module):
    """Masked region modelling: regress the original region features of masked regions."""

    def __init__(self, hidden: int, feat_dim: int):
        super().__init__()
        self.mlp = MLP(hidden, hidden, feat_dim)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(image_tokens)


class MRCHead(MRMHead):
    """Masked region classification: logits over the detector's classes for masked regions (UNITER's
    `region_classifier`, the same Linear -> GELU -> LayerNorm -> Linear shape as the MRFR head)."""
