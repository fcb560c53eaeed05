"""A backbone plus the head of a task kind: loss, predictions and retrieval scores from Examples.

Texts and images are looked up from the image store by id; the head kind and loss come from the
TaskSpec (see bench/tasks/base.py for targets and prediction formats).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.base import Backbone, Encoding, place
from bench.backbones.heads import ClassifyHead, RegionHead, ScoreHead
from bench.core.errors import ConfigError, DataError

# soft_bce: VQA's soft targets (0.3/0.6/0.9/1 per answer); cross_entropy: the top label.
CLASSIFY_LOSSES = ("soft_bce", "cross_entropy")


def fetch_images(store: Any, image_ids: Sequence[str]) -> list:
    """store.get for each id, each distinct id read once."""
    cache = {i: store.get(i) for i in dict.fromkeys(image_ids)}
    return [cache[i] for i in image_ids]


@contextmanager
def evaluating(module: nn.Module):
    """No gradients and eval mode (dropout off), restoring the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class TaskModel(nn.Module):
    """backbone + head for `spec.head` in classify, region, itm, choice.

    labels: the classify label space (VQA's answer vocabulary, GQA's answers, NLVR2's True/False,
    SNLI-VE's 3 labels); required for classify, ignored otherwise.
    itm training: every positive pair, one random in-batch negative image per text and one hard
    negative (the highest-scoring in-batch image among up to `hard_pool` candidates, scored
    without gradients); binary cross-entropy on the match logit.
    """

    def __init__(self, backbone: Backbone, spec: Any, labels: Sequence[str] | None = None, hard_pool: int = 8):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.kind = spec.head
        self.hard_pool = hard_pool
        h = backbone.hidden_size
        if self.kind == "classify":
            if not labels:
                raise ConfigError(f"task '{spec.name}': a classify head needs its label list")
            self.labels = list(labels)
            self.label_index = {lab: i for i, lab in enumerate(self.labels)}
            self.head = ClassifyHead(h, len(self.labels), getattr(spec, "num_images", 1))
            if spec.loss == "soft_bce" and len(self.labels) > 1:
                self.head.init_prior(1.0 / len(self.labels))
        elif self.kind == "region":
            if backbone.image_input != "regions":
                raise ConfigError(
                    f"task '{spec.name}' scores image regions; backbone '{backbone.preset}' takes pixels"
                )
            self.head = RegionHead(h)
        elif self.kind == "itm":
            self.head = ScoreHead(h)
        elif self.kind == "choice":
            self.head = ScoreHead(h, mlp=True)
        else:
            raise ConfigError(f"task '{spec.name}': head '{self.kind}' is not a fine-tuning head (use PretrainModel)")
        place(self.head, backbone.device)

    # ---- forward passes --------------------------------------------------------------------
    def _encode(self, texts: Sequence[str], images: Sequence[Any]) -> Encoding:
        return self.backbone.encode(list(texts), list(images))

    def _classify_logits(self, examples: Sequence[Any], store: Any) -> torch.Tensor:
        n = self.head.n_images
        texts = [ex.texts[0] for _ in range(n) for ex in examples]
        ids = [ex.image_ids[k] for k in range(n) for ex in examples]
        return self.head(self._encode(texts, fetch_images(store, ids)).pooled)

    def _region_logits(self, examples, store) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self._encode([ex.texts[0] for ex in examples], fetch_images(store, [ex.image_ids[0] for ex in examples]))
        return self.head(enc.image_tokens, enc.image_mask), enc.image_mask

    def _candidate_scores(self, examples, store) -> torch.Tensor:
        """[B, n_texts] scores of every candidate text of each example against its image."""
        k = len(examples[0].texts)
        if k % 2 or any(len(ex.texts) != k for ex in examples):
            raise DataError(f"choice task: every example needs 2*n candidate texts, found {len(examples[0].texts)}")
        texts = [t for ex in examples for t in ex.texts]
        images = fetch_images(store, [ex.image_ids[0] for ex in examples for _ in range(k)])
        return self.head(self._encode(texts, images).pooled).view(len(examples), k)

    def _pair_scores(self, texts, images) -> torch.Tensor:
        return self.head(self._encode(texts, images).pooled)

    # ---- public API --------------------------------------------------------------------------
    def loss(self, examples: Sequence[Any], store: Any) -> torch.Tensor:
        """Training loss of a batch of Examples (see the class docstring per head kind)."""
        if self.kind == "classify":
            logits = self._classify_logits(examples, store)
            if self.spec.loss not in CLASSIFY_LOSSES:
                raise ConfigError(f"task {self.spec.name}: loss '{self.spec.loss}' is not a classify loss "
                                  f"(expected one of {', '.join(CLASSIFY_LOSSES)})")
            if self.spec.loss == "soft_bce":
                target = torch.zeros_like(logits, dtype=torch.float32)
                for i, ex in enumerate(examples):
                    for lab, s in ex.target.items():
                        if lab in self.label_index:  # answers outside the vocabulary score 0
                            target[i, self.label_index[lab]] = float(s)
                # Summed over labels, averaged over examples (the VQA convention).
                return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / len(examples)
            return F.cross_entropy(logits.float(), self._label_ids(examples, logits.device))
        if self.kind == "region":
            # Checked on the host from the store's region counts (no device read per step).
            targets = [int(ex.target) for ex in examples]
            counts = [len(img.features) for img in fetch_images(store, [ex.image_ids[0] for ex in examples])]
            bad = [ex.uid for ex, t, c in zip(examples, targets, counts) if not 0 <= t < c]
            if bad:
                raise DataError(f"example {bad[0]}: target region index outside the image's regions")
            logits, _ = self._region_logits(examples, store)
            return F.cross_entropy(logits.float(), torch.tensor(targets, device=logits.device))
        if self.kind == "choice":
            scores = self._candidate_scores(examples, store).float()
            k = scores.shape[1] // 2
            ans = torch.tensor([int(ex.target[0]) for ex in examples], device=scores.device)
            rat = torch.tensor([int(ex.target[1]) for ex in examples], device=scores.device)
            return F.cross_entropy(scores[:, :k], ans) + F.cross_entropy(scores[:, k:], rat)
        return self._itm_loss(examples, store)

    def _label_ids(self, examples, device) -> torch.Tensor:
        ids = []
        for ex in examples:
            lab = max(ex.target.items(), key=lambda kv: kv[1])[0]
            if lab not in self.label_index:
                raise DataError(f"example {ex.uid}: label '{lab}' is not in the task's label list")
            ids.append(self.label_index[lab])
        return torch.tensor(ids, device=device)

    def _itm_loss(self, examples, store) -> torch.Tensor:
        texts = [ex.texts[0] for ex in examples]
        ids = [ex.image_ids[0] for ex in examples]
        images = fetch_images(store, ids)
        b = len(examples)
        pair_t, pair_i, labels = list(range(b)), list(range(b)), [1.0] * b
        hard_t, hard_cands = [], []
        for t in range(b):
            cands = [j for j in range(b) if ids[j] != ids[t]]
            if not cands:
                continue
            pick = torch.randperm(len(cands))[: self.hard_pool].tolist()
            pair_t.append(t)
            pair_i.append(cands[pick[0]])  # the random negative
            labels.append(0.0)
            hard_t.append(t)
            hard_cands.append([cands[p] for p in pick])
        if hard_t:
            flat_t = [t for t, cs in zip(hard_t, hard_cands) for _ in cs]
            flat_i = [j for cs in hard_cands for j in cs]
            with evaluating(self):
                s = self._pair_scores([texts[t] for t in flat_t], [images[j] for j in flat_i])
            start = 0
            for t, cs in zip(hard_t, hard_cands):
                best = int(s[start:start + len(cs)].argmax())
                pair_t.append(t)
                pair_i.append(cs[best])
                labels.append(0.0)
                start += len(cs)
        logits = self._pair_scores([texts[t] for t in pair_t], [images[j] for j in pair_i])
        target = torch.tensor(labels, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def predict(self, examples: Sequence[Any], store: Any) -> dict[str, Any]:
        """uid -> prediction: classify a label string, region the chosen normalised x1y1x2y2 box,
        choice (answer_idx, rationale_idx). For itm use `score`."""
        if self.kind == "itm":
            raise ConfigError("itm predictions are retrieval scores: use TaskModel.score")
        with evaluating(self):
            if self.kind == "classify":
                best = self._classify_logits(examples, store).argmax(-1).tolist()
                return {ex.uid: self.labels[i] for ex, i in zip(examples, best)}
            if self.kind == "region":
                best = self._region_logits(examples, store)[0].argmax(-1).tolist()
                out = {}
                for ex, i in zip(examples, best):
                    boxes = store.get(ex.image_ids[0]).boxes
                    out[ex.uid] = tuple(float(v) for v in boxes[i])
                return out
            scores = self._candidate_scores(examples, store)
            k = scores.shape[1] // 2
            a = scores[:, :k].argmax(-1).tolist()
            r = scores[:, k:].argmax(-1).tolist()
            return {ex.uid: (ai, ri) for ex, ai, ri in zip(examples, a, r)}

    def score(self, texts: Sequence[str], image_ids: Sequence[str], store: Any, batch_size: int = 64) -> torch.Tensor:
        """[n_texts, n_images] match scores of every (text, image) pair, in batches (CPU float tensor)."""
        images = fetch_images(store, image_ids)
        n_t, n_i = len(texts), len(images)
        out = torch.empty(n_t * n_i)
        with evaluating(self):
            for start in range(0, n_t * n_i, batch_size):
                idx = range(start, min(start + batch_size, n_t * n_i))
                s = self._pair_scores([texts[k // n_i] for k in idx], [images[k % n_i] for k in idx])
                out[start:start + len(idx)] = s.float().cpu()
        return out.view(n_t, n_i)
