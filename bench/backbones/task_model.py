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

from bench.backbones.base import Backbone, Encoding
from bench.backbones.heads import ClassifyHead, RegionHead, ScoreHead
from bench.core.device import place
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
    itm training (`itm_loss`):
      "bce"     every positive pair, one random in-batch negative image per text and one hard
                negative (the highest-scoring in-batch image among up to `hard_pool` candidates,
                scored without gradients); binary cross-entropy on the match logit.
      "margin"  UNITER's retrieval objective: for each positive pair, the hardest in-batch negative
                image of its text and the hardest negative text of its image (mined as above), and
                the ranking loss max(0, margin + s(neg) - s(pos)) averaged over both directions.
    The default is "margin" (margin 0.2, UNITER's Flickr30k setting) for the real families (uniter,
    lxmert, vilt) and "bce" for the toy and MiniLM presets, whose recipes were measured with it.
    """

    REAL_FAMILIES = ("uniter", "lxmert", "vilt")

    def __init__(self, backbone: Backbone, spec: Any, labels: Sequence[str] | None = None, hard_pool: int = 8,
                 itm_loss: str | None = None, margin: float = 0.2):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.kind = spec.head
        self.hard_pool = hard_pool
        self.itm_loss = itm_loss or ("margin" if backbone.family in self.REAL_FAMILIES else "bce")
        if self.itm_loss not in ("bce", "margin"):
            raise ConfigError(f"task '{spec.name}': itm_loss must be 'bce' or 'margin', found {self.itm_loss!r}")
        self.margin = margin
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

    def _hardest(self, queries: list[int], pools: list[list[int]], pair) -> list[int]:
        """For each query, the pool member whose pair (query, member) scores highest, without gradients."""
        flat = [(q, c) for q, cs in zip(queries, pools) for c in cs]
        if not flat:
            return []
        with evaluating(self):
            s = self._pair_scores(*pair(flat)).float().cpu()
        out, start = [], 0
        for cs in pools:
            out.append(cs[int(s[start:start + len(cs)].argmax())])
            start += len(cs)
        return out

    def _itm_loss(self, examples, store) -> torch.Tensor:
        texts = [ex.texts[0] for ex in examples]
        ids = [ex.image_ids[0] for ex in examples]
        images = fetch_images(store, ids)
        b = len(examples)
        # Candidate negatives: in-batch items of another image, up to hard_pool of them at random.
        pools = []
        for t in range(b):
            cands = [j for j in range(b) if ids[j] != ids[t]]
            pools.append([cands[p] for p in torch.randperm(len(cands))[: self.hard_pool].tolist()] if cands else [])
        has = [t for t in range(b) if pools[t]]

        def text_image(flat):
            return [texts[t] for t, _ in flat], [images[j] for _, j in flat]

        hard_img = self._hardest(has, [pools[t] for t in has], text_image)
        if self.itm_loss == "margin":
            # Negative texts of image i: captions of the other images in the pool of i's own example.
            hard_txt = self._hardest(has, [pools[i] for i in has],
                                     lambda flat: ([texts[c] for _, c in flat], [images[i] for i, _ in flat]))
            n = len(has)
            rows_t = list(range(b)) + has + hard_txt
            rows_i = list(range(b)) + hard_img + has
            s = self._pair_scores([texts[t] for t in rows_t], [images[i] for i in rows_i]).float()
            if not n:  # one image in the batch: no negatives, nothing to rank (a zero loss with a graph)
                return s.sum() * 0.0
            pos, neg_img, neg_txt = s[:b][has], s[b:b + n], s[b + n:]
            return (F.relu(self.margin + neg_img - pos).mean() + F.relu(self.margin + neg_txt - pos).mean()) / 2
        pair_t = list(range(b)) + has + has
        pair_i = list(range(b)) + [pools[t][0] for t in has] + hard_img  # positives, random, hard negatives
        labels = [1.0] * b + [0.0] * (2 * len(has))
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
