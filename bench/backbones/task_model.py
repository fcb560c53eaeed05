"""A backbone plus the head of a task kind: loss, predictions and retrieval scores from Examples.

The input path has two halves. `TaskModel.batcher(store)` is the host half: a picklable `TaskBatcher`
(the backbone's tokenizer and collation, the store, the head's label index; no weights) turns a list of
Examples into a `TaskBatch` of padded tensors and targets — DataLoader workers run it. `forward_loss`
/ `predict_batch` are the device half: they move the batch (`non_blocking`) and select rows on the
device. `loss(examples, store)` and `predict(examples, store)` are the two composed.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.base import Backbone, BatchInputs, Encoding, Prepared
from bench.backbones.checkpoint import load_state_into
from bench.backbones.heads import ClassifyHead, RegionHead, ScoreHead
from bench.core.device import place
from bench.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

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


@dataclass
class TaskBatch:
    """A batch built on the host: texts and images collated once, targets as tensors, ids on the host."""

    text: Prepared
    images: Prepared
    uids: tuple = ()
    image_ids: tuple = ()
    target: torch.Tensor | None = None
    boxes: list = field(default_factory=list)  # region heads: each image's boxes (predictions name a box)

    def to(self, device, non_blocking: bool = False) -> "TaskBatch":
        t = self.target.to(device, non_blocking=non_blocking) if self.target is not None else None
        return TaskBatch(self.text.to(device, non_blocking), self.images.to(device, non_blocking),
                         self.uids, self.image_ids, t, self.boxes)

    def pin_memory(self) -> "TaskBatch":
        t = self.target.pin_memory() if self.target is not None else None
        return TaskBatch(self.text.pin_memory(), self.images.pin_memory(), self.uids, self.image_ids, t, self.boxes)


class PreparedLoss:
    """A loss in two halves: `prepare(examples)` on the host (picklable; DataLoader workers run it), and
    the call on a prepared batch (the forward). `tokens(example)` counts an example's text and image
    tokens (token-budget batches). The training loop duck-types this: a plain callable gets Examples."""

    def __init__(self, prepare: Callable, forward: Callable, tokens: Callable | None = None):
        self.prepare, self.forward, self.tokens = prepare, forward, tokens

    def __call__(self, batch: Any) -> Any:
        return self.forward(batch)


class TaskBatcher:
    """examples -> TaskBatch for one head kind (picklable: no weights). `targets=False` for predictions
    (dev labels outside the label list are then no error)."""

    def __init__(self, inputs: BatchInputs, spec: Any, kind: str, store: Any, label_index: dict | None,
                 targets: bool = True):
        self.inputs, self.kind, self.store, self.label_index, self.targets = inputs, kind, store, label_index, targets
        self.task, self.loss = spec.name, spec.loss
        self.n_images = getattr(spec, "num_images", 1) if kind == "classify" else 1

    def __call__(self, examples: Sequence[Any]) -> TaskBatch:
        uids = tuple(ex.uid for ex in examples)
        if self.kind == "choice":
            k = len(examples[0].texts)
            if k % 2 or any(len(ex.texts) != k for ex in examples):
                raise DataError(f"choice task: every example needs 2*n candidate texts, found {len(examples[0].texts)}")
            texts = [t for ex in examples for t in ex.texts]
        else:
            texts = [ex.texts[0] for ex in examples]
        # classify with n images (NLVR2): image-major, [all first images; all second images]
        ids = [ex.image_ids[k] for k in range(self.n_images) for ex in examples]
        images = fetch_images(self.store, ids)
        batch = TaskBatch(self.inputs.texts(texts), self.inputs.images(images), uids, tuple(ids))
        if self.kind == "region":
            batch.boxes = [img.boxes for img in images]
        if self.targets:
            batch.target = self._targets(examples, batch)
        self._attach(batch, images)
        return batch

    def _attach(self, batch: TaskBatch, images: list) -> None:
        """Hook for a subclass to add what it reads off the fetched images (no second fetch)."""

    def _targets(self, examples, batch: TaskBatch) -> torch.Tensor | None:
        if self.kind == "classify":
            if self.loss not in CLASSIFY_LOSSES:
                raise ConfigError(f"task {self.task}: loss '{self.loss}' is not a classify loss "
                                  f"(expected one of {', '.join(CLASSIFY_LOSSES)})")
            if self.loss == "soft_bce":
                target = torch.zeros(len(examples), len(self.label_index))
                for i, ex in enumerate(examples):
                    for lab, s in ex.target.items():
                        if lab in self.label_index:  # answers outside the vocabulary score 0
                            target[i, self.label_index[lab]] = float(s)
                return target
            ids = []
            for ex in examples:
                lab = max(ex.target.items(), key=lambda kv: kv[1])[0]
                if lab not in self.label_index:
                    raise DataError(f"example {ex.uid}: label '{lab}' is not in the task's label list")
                ids.append(self.label_index[lab])
            return torch.tensor(ids)
        if self.kind == "region":
            targets = [int(ex.target) for ex in examples]
            counts = [e[0] for e in batch.images.extents]
            bad = [ex.uid for ex, t, c in zip(examples, targets, counts) if not 0 <= t < c]
            if bad:
                raise DataError(f"example {bad[0]}: target region index outside the image's regions")
            return torch.tensor(targets)
        if self.kind == "choice":
            return torch.tensor([[int(ex.target[0]), int(ex.target[1])] for ex in examples])
        return None

    def _image_tokens(self, image_id: str) -> int:
        # the store's size of the image (box count, picture size: read without decoding it, memoised)
        size = self.store.size(image_id) if hasattr(self.store, "size") else self.store.get(image_id)
        return self.inputs.image_tokens(size)

    def tokens(self, ex: Any) -> int:
        """Text plus image tokens of every (text, image) pair the forward encodes for `ex`."""
        if self.kind == "classify":
            return sum(self.inputs.text_tokens(ex.texts[0]) + self._image_tokens(ex.image_ids[k])
                       for k in range(self.n_images))
        image = self._image_tokens(ex.image_ids[0])
        if self.kind == "choice":
            return sum(self.inputs.text_tokens(t) for t in ex.texts) + len(ex.texts) * image
        return self.inputs.text_tokens(ex.texts[0]) + image


class TaskModel(nn.Module):
    """backbone + head for `spec.head` in classify, region, itm, choice.

    labels: the classify label space (VQA's answer vocabulary, GQA's answers, NLVR2's True/False,
    SNLI-VE's 3 labels); required for classify, ignored otherwise.
    itm training (`itm_loss`):
      "bce"     every positive pair, one random in-batch negative image per text and one hard
                negative (the highest-scoring in-batch image among up to `hard_pool` candidates,
                scored without gradients); binary cross-entropy on the match logit.
      "margin"  UNITER's retrieval objective (model/itm.py): for each positive pair one negative image
                of its text and one negative text of its image, and the ranking loss
                max(0, margin + σ(s(neg)) − σ(s(pos))) on sigmoid scores, averaged over both directions.
                With `hard_negatives` = 0 (UNITER's released default, negative_size 1) each negative is
                drawn at random among the batch's items of another image; with K > 0 it is the
                highest-scoring of K such candidates, mined without gradients (UNITER's -hn configs).
                The rank head starts from the checkpoint's ITM head, its match row (train_itm.py
                `init_output`), when the checkpoint has one (`backbone.pretrained_heads['rank.*']`).
    The default is "margin" (margin 0.2, UNITER's Flickr30k setting) for the real families (uniter,
    lxmert, vilt) and "bce" for the toy and MiniLM presets, whose recipes were measured with it.
    """

    REAL_FAMILIES = ("uniter", "lxmert", "vilt")

    def __init__(self, backbone: Backbone, spec: Any, labels: Sequence[str] | None = None, hard_pool: int = 8,
                 itm_loss: str | None = None, margin: float = 0.2, hard_negatives: int = 0):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.kind = spec.head
        # The head starts from θ0's own weights (a pre-trained ITM head): θ0 ⊙ m can then be scored
        # without fine-tuning (the leaderboard's "without fine-tuning" column).
        self.head_from_theta0 = False
        self.hard_pool = hard_pool
        self.itm_loss = itm_loss or ("margin" if backbone.family in self.REAL_FAMILIES else "bce")
        if self.itm_loss not in ("bce", "margin"):
            raise ConfigError(f"task '{spec.name}': itm_loss must be 'bce' or 'margin', found {self.itm_loss!r}")
        self.margin = margin
        self.hard_negatives = int(hard_negatives)
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
            rank = {k.removeprefix("rank."): v for k, v in getattr(backbone, "pretrained_heads", {}).items()
                    if k.startswith("rank.")}
            if rank and self.itm_loss == "margin":
                load_state_into(self.head, rank, what=f"rank head of {backbone.preset} (its ITM head's match row)")
                self.head_from_theta0 = True
            elif self.itm_loss == "margin" and "itm.proj.weight" in getattr(backbone, "pretrained_heads", {}):
                log.warning("%s: θ0's heads.safetensors predates the rank head (rank.*): the retrieval head starts "
                            "fresh; write θ0 again (a new --out) for UNITER's ITM-initialised one", backbone.preset)
        elif self.kind == "choice":
            self.head = ScoreHead(h, mlp=True)
        else:
            raise ConfigError(f"task '{spec.name}': head '{self.kind}' is not a fine-tuning head (use PretrainModel)")
        place(self.head, backbone.device)

    # ---- the two halves of the input path ------------------------------------------------------
    def batcher(self, store: Any, targets: bool = True) -> TaskBatcher:
        """The host half (see the module docstring)."""
        return TaskBatcher(self.backbone.inputs(), self.spec, self.kind, store,
                           getattr(self, "label_index", None), targets)

    def batch_loss(self, store: Any) -> PreparedLoss:
        """This head's loss as a `PreparedLoss` (what the training loop's DataLoader feeds)."""
        b = self.batcher(store)
        return PreparedLoss(b, self.forward_loss, b.tokens)

    def _on_device(self, batch: TaskBatch) -> TaskBatch:
        return batch.to(self.backbone.device, non_blocking=True)

    def _pair_scores(self, batch: TaskBatch, text_rows=None, image_rows=None) -> torch.Tensor:
        """Head scores of the (text row, image row) pairs of a prepared batch (all rows when None)."""
        return self.head(self._encode(batch, text_rows, image_rows).pooled)

    def _encode(self, batch: TaskBatch, text_rows=None, image_rows=None) -> Encoding:
        text = batch.text.select(text_rows)
        return self.backbone.encode_tokens(text.input_ids, text.mask, batch.images.select(image_rows))

    def _classify_logits(self, batch: TaskBatch) -> torch.Tensor:
        b = len(batch.text)
        rows = None if self.head.n_images == 1 else [i for _ in range(self.head.n_images) for i in range(b)]
        return self.head(self._encode(batch, rows).pooled)

    def _region_logits(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self._encode(batch)
        return self.head(enc.image_tokens, enc.image_mask), enc.image_mask

    def _candidate_scores(self, batch: TaskBatch) -> torch.Tensor:
        """[B, n_texts] scores of every candidate text of each example against its image."""
        b = len(batch.images)
        k = len(batch.text) // b
        return self._pair_scores(batch, None, [i for i in range(b) for _ in range(k)]).view(b, k)

    # ---- public API --------------------------------------------------------------------------
    def loss(self, examples: Sequence[Any], store: Any) -> torch.Tensor:
        """Training loss of a batch of Examples (see the class docstring per head kind)."""
        return self.forward_loss(self.batcher(store)(examples))

    def forward_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Training loss of a prepared batch (`batcher(store)(examples)`)."""
        batch = self._on_device(batch)
        if self.kind == "classify":
            logits = self._classify_logits(batch)
            if self.spec.loss == "soft_bce":
                # Summed over labels, averaged over examples (the VQA convention).
                return F.binary_cross_entropy_with_logits(logits.float(), batch.target, reduction="sum") / len(logits)
            return F.cross_entropy(logits.float(), batch.target)
        if self.kind == "region":
            return F.cross_entropy(self._region_logits(batch)[0].float(), batch.target)
        if self.kind == "choice":
            scores = self._candidate_scores(batch).float()
            k = scores.shape[1] // 2
            ans, rat = batch.target[:, 0], batch.target[:, 1]
            return F.cross_entropy(scores[:, :k], ans) + F.cross_entropy(scores[:, k:], rat)
        return self._itm_loss(batch)

    def _hardest(self, batch: TaskBatch, queries: list[int], pools: list[list[int]], pair) -> list[int]:
        """For each query, the pool member whose pair (query, member) scores highest, without gradients."""
        flat = [(q, c) for q, cs in zip(queries, pools) for c in cs]
        if not flat:
            return []
        with evaluating(self):
            s = self._pair_scores(batch, *pair(flat)).float().cpu()
        out, start = [], 0
        for cs in pools:
            out.append(cs[int(s[start:start + len(cs)].argmax())])
            start += len(cs)
        return out

    def _itm_loss(self, batch: TaskBatch) -> torch.Tensor:
        ids = batch.image_ids
        b = len(ids)
        if self.itm_loss == "margin":
            return self._margin_loss(batch, [t for t in range(b) if any(i != ids[t] for i in ids)])
        # Candidate negatives: in-batch items of another image, up to hard_pool of them at random.
        pools = []
        for t in range(b):
            cands = [j for j in range(b) if ids[j] != ids[t]]
            pools.append([cands[p] for p in torch.randperm(len(cands))[: self.hard_pool].tolist()] if cands else [])
        has = [t for t in range(b) if pools[t]]
        # Rows of the batch's texts and images: mining indexes the prepared tensors, nothing is collated again.
        hard_img = self._hardest(batch, has, [pools[t] for t in has],
                                 lambda flat: ([t for t, _ in flat], [j for _, j in flat]))
        pair_t = list(range(b)) + has + has
        pair_i = list(range(b)) + [pools[t][0] for t in has] + hard_img  # positives, random, hard negatives
        labels = [1.0] * b + [0.0] * (2 * len(has))
        logits = self._pair_scores(batch, pair_t, pair_i)
        target = torch.tensor(labels, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def _margin_loss(self, batch: TaskBatch, has: list[int]) -> torch.Tensor:
        """The margin loss on sigmoid scores (class docstring): sampled negatives, or mined with hard_negatives."""
        ids = batch.image_ids
        b = len(ids)
        k = max(self.hard_negatives, 1)
        # Candidates each way, drawn apart: another image for the text, another image's caption for the image.
        pools = {}
        for way in ("image", "text"):
            pools[way] = []
            for t in has:
                cands = [j for j in range(b) if ids[j] != ids[t]]
                pools[way].append([cands[p] for p in torch.randperm(len(cands))[:k].tolist()])
        if self.hard_negatives:  # the hardest of K, scored without gradients on the prepared rows
            neg_img = self._hardest(batch, has, pools["image"], lambda flat: ([t for t, _ in flat], [j for _, j in flat]))
            neg_txt = self._hardest(batch, has, pools["text"], lambda flat: ([c for _, c in flat], [i for i, _ in flat]))
        else:
            neg_img, neg_txt = [p[0] for p in pools["image"]], [p[0] for p in pools["text"]]
        n = len(has)
        s = torch.sigmoid(self._pair_scores(batch, list(range(b)) + has + neg_txt,
                                            list(range(b)) + neg_img + has).float())
        if not n:  # one image in the batch: no negatives, nothing to rank (a zero loss with a graph)
            return s.sum() * 0.0
        pos, s_img, s_txt = s[:b][has], s[b:b + n], s[b + n:]
        return (F.relu(self.margin + s_img - pos).mean() + F.relu(self.margin + s_txt - pos).mean()) / 2

    def predict(self, examples: Sequence[Any], store: Any) -> dict[str, Any]:
        """uid -> prediction: classify a label string, region the chosen normalised x1y1x2y2 box,
        choice (answer_idx, rationale_idx). For itm use `score`."""
        if self.kind == "itm":
            raise ConfigError("itm predictions are retrieval scores: use TaskModel.score")
        return self.predict_batch(self.batcher(store, targets=False)(examples))

    def predict_batch(self, batch: TaskBatch) -> dict[str, Any]:
        """`predict` on a prepared batch (`batcher(store, targets=False)(examples)`)."""
        with evaluating(self):
            batch = self._on_device(batch)
            if self.kind == "classify":
                best = self._classify_logits(batch).argmax(-1).tolist()
                return {u: self.labels[i] for u, i in zip(batch.uids, best)}
            if self.kind == "region":
                best = self._region_logits(batch)[0].argmax(-1).tolist()
                return {u: tuple(float(v) for v in boxes[i]) for u, boxes, i in zip(batch.uids, batch.boxes, best)}
            scores = self._candidate_scores(batch)
            k = scores.shape[1] // 2
            a = scores[:, :k].argmax(-1).tolist()
            r = scores[:, k:].argmax(-1).tolist()
            return {u: (ai, ri) for u, ai, ri in zip(batch.uids, a, r)}

    def score(self, texts: Sequence[str], image_ids: Sequence[str], store: Any, batch_size: int = 64) -> torch.Tensor:
        """[n_texts, n_images] match scores of every (text, image) pair (CPU float tensor).

        The texts are tokenised once and the image bank collated once, both kept on the device; each
        block of `batch_size` pairs (text-major) indexes them on the device and is cut to its longest
        text and image, so a block's forward is the one the same pairs collated alone would get."""
        inputs = self.backbone.inputs()
        dev = self.backbone.device
        n_t, n_i = len(texts), len(image_ids)
        with evaluating(self):
            prepared = TaskBatch(inputs.texts(texts), inputs.images(fetch_images(store, image_ids)))
            prepared = prepared.to(dev, non_blocking=True)
            out = torch.empty(n_t * n_i, device=dev)
            for start in range(0, n_t * n_i, batch_size):
                end = min(start + batch_size, n_t * n_i)
                k = torch.arange(start, end, device=dev)
                rows = range(start, end)
                t = prepared.text.select([r // n_i for r in rows], index=k // n_i)
                images = prepared.images.select([r % n_i for r in rows], index=k % n_i)
                enc = self.backbone.encode_tokens(t.input_ids, t.mask, images)
                out[start:end] = self.head(enc.pooled).float()
        return out.view(n_t, n_i).cpu()
