"""Pre-training objectives over image-caption Examples: MLM, ITM, TAG and (region backbones) MRM and MRC.

Like UNITER, each objective masks one modality at a time and gets its own forward pass:
  mlm  mask `mask_prob` of the caption's word tokens (80% [MASK], 10% random, 10% kept; at least
       one per caption), predict them through the decoder tied to the word embeddings
  itm  replace the image of half the pairs by another in-batch image, classify matched/not
  mrm  zero `mask_prob` of the real regions (at least one per image; UNITER also adds its mask
       embedding), regress their original features (MSE): UNITER's MRFR
  mrc  mask regions as mrm, predict the detector's class distribution of each (the store's
       `soft_labels`): KL(soft labels || softmax(logits)) averaged over regions and classes as
       UNITER's MRC-kl; only presets with a region classifier (`region_classes`) have the head
  tag  image tagging: from the image alone (the text is one [CLS] token) predict which words the
       caption uses — binary cross-entropy per vocabulary word (multi-label tagging, as in Joulin et
       al. 2016). ViLT starts its transformer from ViT (ImageNet
       labels) and region backbones read a detector trained on Visual Genome labels; a toy pixel
       backbone has neither, so this is how it learns what its patches show (pixel backbones only;
       the head exists when the plan uses it: docs/ARCHITECTURE.md, "toy-vilt")
`loss` returns {objective: weight * loss}: the training loop sums the values, so the sum is the
weighted objective mix (divide by the weight to read an objective's own loss).
Inputs are prepared on the host as the fine-tuning heads' are (`batcher`, a picklable TaskBatcher);
every random draw (objective, masks, ITM pairing) stays in the forward, on the training process's RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.base import Backbone, RegionBatch
from bench.backbones.checkpoint import load_state_into
from bench.backbones.heads import ClassifyHead, MLMHead, MRCHead, MRMHead, ScoreHead
from bench.backbones.task_model import PreparedLoss, TaskBatch, TaskBatcher
from bench.core.device import place
from bench.core.errors import ConfigError, DataError
from bench.core.source import OBJECTIVES


def _at_least_one(chosen: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """Make sure each row with an eligible position has one chosen (a random eligible one)."""
    empty = (chosen.sum(1) == 0) & (eligible.sum(1) > 0)
    if empty.any():
        noise = torch.rand(eligible.shape, device=eligible.device).masked_fill(~eligible, -1.0)
        pick = noise.argmax(1)
        rows = empty.nonzero().squeeze(1)
        chosen = chosen.clone()
        chosen[rows, pick[rows]] = True
    return chosen


def _check_known(objectives: dict[str, float]) -> None:
    unknown = [k for k in objectives if k not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"pretrain.objectives: unknown objective '{unknown[0]}' (known: {', '.join(OBJECTIVES)})")


@dataclass(frozen=True)
class _Captions:
    """What a TaskBatcher reads of a task spec, for image-caption pairs (no targets)."""

    name: str = "pretrain"
    loss: str = ""


_CAPTIONS = _Captions()


class _SoftLabelBatcher(TaskBatcher):
    """Caption batches whose target is each region's detector class distribution ([B, N, classes],
    fp16 as stored, padded like the features): MRC-kl's target, built on the host like the rest."""

    def __init__(self, inputs: Any, store: Any, classes: int):
        super().__init__(inputs, _CAPTIONS, "itm", store, None, targets=False)
        self.classes = classes

    def _attach(self, batch: TaskBatch, images: list) -> None:
        for image_id, img in zip(batch.image_ids, images):
            soft = getattr(img, "soft_labels", None)
            if soft is None or soft.shape[-1] != self.classes:
                found = "none" if soft is None else f"{soft.shape[-1]} classes"
                raise DataError(f"image {image_id}: MRC-kl needs soft_labels over {self.classes} classes "
                                f"(UNITER img_db features), found {found}")
        target = torch.zeros(len(images), max([len(img.soft_labels) for img in images] + [1]), self.classes,
                             dtype=torch.float16)
        for i, img in enumerate(images):
            target[i, : len(img.soft_labels)] = torch.as_tensor(img.soft_labels)
        batch.target = target


def draw_objective(objectives: dict[str, float]) -> str:
    """One objective name, drawn with probability ∝ weight from torch's global RNG (seeded by train)."""
    if not objectives:
        raise ConfigError("pretrain.objectives: no objective with a positive weight for this backbone")
    names = list(objectives)
    weights = torch.tensor([float(objectives[n]) for n in names])
    return names[int(torch.multinomial(weights, 1))]


class PretrainModel(nn.Module):
    """backbone + MLM, ITM and (for region backbones) MRM / MRC heads, and with `tagging` (pixel backbones)
    the TAG head; heads the backbone's checkpoint trained start from its weights
    (`backbone.pretrained_heads`), the others are initialised fresh."""

    def __init__(self, backbone: Backbone, tagging: bool = False):
        super().__init__()
        self.backbone = backbone
        h = backbone.hidden_size
        # Under `heads.` so the training loop gives them the head learning rate.
        self.heads = nn.ModuleDict({"mlm": MLMHead(backbone.word_embeddings(), h), "itm": ScoreHead(h)})
        if backbone.image_input == "regions":
            self.heads["mrm"] = MRMHead(h, backbone.config["feat_dim"])
            if backbone.config.get("region_classes"):
                self.heads["mrc"] = MRCHead(h, backbone.config["region_classes"])
        if tagging and backbone.image_input == "pixels":
            # Last, so the other heads start as they do without it (same draws from the RNG); each word
            # starts at probability 1/V, as a multi-label head should (ClassifyHead.init_prior).
            vocab = backbone.word_embeddings().num_embeddings
            self.heads["tag"] = ClassifyHead(h, vocab)
            self.heads["tag"].init_prior(1.0 / vocab)
        self.loaded_heads = self._load_pretrained_heads(getattr(backbone, "pretrained_heads", {}))
        place(self, backbone.device)

    def _load_pretrained_heads(self, state: dict) -> tuple[str, ...]:
        """Start the heads the checkpoint trained from its weights (the others stay fresh); returns
        the objectives loaded. A head whose weights have other shapes is a one-line CheckpointError."""
        loaded = []
        for name, head in self.heads.items():
            part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}
            if part:
                load_state_into(head, part, what=f"pre-trained {name} head of {self.backbone.preset}")
                loaded.append(name)
        return tuple(loaded)

    def head_state(self) -> dict[str, torch.Tensor]:
        """The heads' weights as `backbone.pretrained_heads` holds them (the MLM decoder's tied word
        table is not among them: it is the backbone's), detached on the CPU; with an ITM head also `rank.*`,
        its copy, from which retrieval's margin head starts (UNITER initialises it from the ITM head)."""
        state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in self.heads.state_dict().items()}
        state.update({"rank." + k.removeprefix("itm."): v.clone() for k, v in state.items() if k.startswith("itm.proj.")})
        return state

    def available(self) -> tuple[str, ...]:
        """Objectives this backbone supports (MRM needs region features, MRC a region classifier)."""
        return tuple(k for k in OBJECTIVES if k in self.heads)

    def batcher(self, store: Any, soft_labels: bool = False) -> TaskBatcher:
        """The host half of the input path: captions tokenised, images collated, ids kept; with
        `soft_labels` (MRC-kl) the regions' class distributions padded as the batch's target."""
        if soft_labels and "mrc" in self.heads:
            return _SoftLabelBatcher(self.backbone.inputs(), store, self.heads["mrc"].mlp.net[-1].out_features)
        return TaskBatcher(self.backbone.inputs(), _CAPTIONS, "itm", store, None, targets=False)

    def batch_loss(self, store: Any, objectives: dict[str, float], mask_prob: float = 0.15,
                   sampled: bool = True) -> PreparedLoss:
        """`sampled_loss` (or `loss` when not `sampled`) as a PreparedLoss for the training loop."""
        b = self.batcher(store, soft_labels=objectives.get("mrc", 0) > 0)
        forward = self.sampled_forward if sampled else self.forward_loss
        return PreparedLoss(b, lambda batch: forward(batch, objectives, mask_prob), b.tokens)

    def loss(self, examples: Sequence[Any], store: Any, objectives: dict[str, float],
             mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
        """{objective: weight * loss} for every objective with weight > 0 (sum them to optimise).

        'mrm' is skipped (not an error) for pixel backbones, as the config's default mix names it.
        """
        return self.forward_loss(self.batcher(store, objectives.get("mrc", 0) > 0)(examples), objectives, mask_prob)

    def forward_loss(self, batch: TaskBatch, objectives: dict[str, float],
                     mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
        """`loss` on a prepared batch."""
        _check_known(objectives)
        batch = batch.to(self.backbone.device, non_blocking=True)
        out: dict[str, torch.Tensor] = {}
        for name, weight in objectives.items():
            if weight <= 0 or name not in self.available():
                continue
            out[name] = weight * getattr(self, f"_{name}_loss")(batch, mask_prob)
        if not out:
            raise ConfigError("pretrain.objectives: no objective with a positive weight for this backbone")
        return out

    def sampled_loss(self, examples: Sequence[Any], store: Any, objectives: dict[str, float],
                     mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
        """{objective: loss} for ONE objective drawn per batch with probability ∝ its weight.

        This is UNITER's pre-training schedule (one task per mini-batch, sampled by ratio): a step
        costs one forward pass instead of one per objective."""
        return self.sampled_forward(self.batcher(store, objectives.get("mrc", 0) > 0)(examples), objectives, mask_prob)

    def sampled_forward(self, batch: TaskBatch, objectives: dict[str, float],
                        mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
        """`sampled_loss` on a prepared batch."""
        _check_known(objectives)
        usable = {k: w for k, w in objectives.items() if w > 0 and k in self.available()}
        return self.forward_loss(batch, {draw_objective(usable): 1.0}, mask_prob)

    def _mlm_loss(self, batch: TaskBatch, mask_prob) -> torch.Tensor:
        bb = self.backbone
        text = batch.text.select()
        input_ids, text_mask = text.input_ids, text.mask
        tok = bb.tokenizer
        special = torch.tensor(sorted(set(tok.all_special_ids)), device=input_ids.device)
        eligible = text_mask & ~torch.isin(input_ids, special)
        chosen = (torch.rand(input_ids.shape, device=input_ids.device) < mask_prob) & eligible
        chosen = _at_least_one(chosen, eligible)
        labels = input_ids.masked_fill(~chosen, -100)
        roll = torch.rand(input_ids.shape, device=input_ids.device)
        masked = input_ids.clone()
        masked[chosen & (roll < 0.8)] = tok.mask_token_id
        random_tok = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[random_tok] = torch.randint(len(tok), (int(random_tok.sum()),), device=input_ids.device)
        enc = bb.encode_tokens(masked, text_mask, batch.images.select())
        text_states = enc.sequence[:, : input_ids.shape[1]]
        logits = self.heads["mlm"](text_states[chosen])
        return F.cross_entropy(logits.float(), labels[chosen])

    def _itm_loss(self, batch: TaskBatch, mask_prob) -> torch.Tensor:
        ids = batch.image_ids
        b = len(ids)
        paired = list(range(b))  # image row of each caption: another in-batch image for half of them
        labels = torch.ones(b)
        for i in range(b):
            others = [j for j in range(b) if ids[j] != ids[i]]
            if others and torch.rand(()) < 0.5:
                paired[i] = others[int(torch.randint(len(others), ()))]
                labels[i] = 0.0
        text = batch.text.select()
        enc = self.backbone.encode_tokens(text.input_ids, text.mask, batch.images.select(paired))
        logits = self.heads["itm"](enc.pooled)
        return F.binary_cross_entropy_with_logits(logits.float(), labels.to(logits.device))

    def _tag_loss(self, batch: TaskBatch, mask_prob) -> torch.Tensor:
        bb = self.backbone
        text = batch.text.select()
        input_ids, text_mask = text.input_ids, text.mask
        special = torch.tensor(sorted(set(bb.tokenizer.all_special_ids)), device=input_ids.device)
        words = (text_mask & ~torch.isin(input_ids, special)).float()
        bag = torch.zeros(len(input_ids), bb.word_embeddings().num_embeddings, device=input_ids.device)
        bag.scatter_reduce_(1, input_ids, words, reduce="amax")  # each word of the caption once
        cls = input_ids[:, :1]  # the image alone: no caption word reaches the encoder
        enc = bb.encode_tokens(cls, text_mask[:, :1], batch.images.select())
        return F.binary_cross_entropy_with_logits(self.heads["tag"](enc.pooled).float(), bag)

    def _masked_regions(self, batch: TaskBatch, mask_prob):
        """Encode with `mask_prob` of each image's real regions zeroed (at least one): (regions, chosen,
        the encoder's states of the chosen regions)."""
        bb = self.backbone
        text = batch.text.select()
        input_ids, text_mask = text.input_ids, text.mask
        regions: RegionBatch = batch.images.select()
        chosen = (torch.rand(regions.mask.shape, device=regions.mask.device) < mask_prob) & regions.mask
        chosen = _at_least_one(chosen, regions.mask)
        masked = RegionBatch(regions.features.masked_fill(chosen[..., None], 0.0), regions.positions, regions.mask)
        if bb.arch == "uniter":
            enc = bb.encode_tokens(input_ids, text_mask, masked, region_masked=chosen)
        else:
            enc = bb.encode_tokens(input_ids, text_mask, masked)
        return regions, chosen, enc.image_tokens[chosen]

    def _mrm_loss(self, batch: TaskBatch, mask_prob) -> torch.Tensor:
        regions, chosen, states = self._masked_regions(batch, mask_prob)
        return F.mse_loss(self.heads["mrm"](states).float(), regions.features[chosen].float())

    def _mrc_loss(self, batch: TaskBatch, mask_prob) -> torch.Tensor:
        if batch.target is None:
            raise ConfigError("objective 'mrc': the batch carries no soft labels (prepare it with "
                              "batcher(store, soft_labels=True))")
        regions, chosen, states = self._masked_regions(batch, mask_prob)
        target = batch.target[:, : chosen.shape[1]].float()
        log_p = F.log_softmax(self.heads["mrc"](states).float(), dim=-1)
        return F.kl_div(log_p, target[chosen], reduction="none").mean()
