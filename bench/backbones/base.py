"""The backbone contract: a joint (text, image) encoder with a fixed, documented prunable set.

Every backbone family (UNITER, LXMERT, ViLT) subclasses `Backbone` and implements `_encode_batch`
(token ids + collated images -> Encoding), `_prunable_prefixes` and `word_embeddings`.
Tokenisation is cached per text string, so repeated texts (VQA questions over many epochs,
retrieval scoring of every caption against every image) are tokenised once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import get_worker_info

from bench.backbones import checkpoint
from bench.backbones.pretrained_heads import HEADS_FILE
from bench.core.errors import ConfigError, DataError
from bench.core.io import atomic_write_bytes, atomic_write_json
from bench.data.images import image_size
from tickets.fingerprint import fingerprint_of

BACKBONE_FORMAT = 1


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device."""
    if device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"backbone.device: expected auto, cpu, cuda or cuda:N, found '{device}'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"backbone.device: '{device}' requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"backbone.device: '{device}' requested but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"backbone.device: '{device}' requested but MPS (Apple GPU) is not available here; "
                          "use auto or cpu")
    return dev


@dataclass
class Encoding:
    """Output of `Backbone.encode`.

    sequence    [B, L, H] joint sequence (text tokens first, then image tokens)
    pooled      [B, H] pooled representation (the [CLS] pooler)
    image_slice slice of `sequence`'s L axis holding the image tokens (regions or patches)
    text_mask   [B, Lt] bool, real (non-padding) text tokens
    image_mask  [B, Li] bool, real image tokens (padded regions are False)
    """

    sequence: torch.Tensor
    pooled: torch.Tensor
    image_slice: slice
    text_mask: torch.Tensor
    image_mask: torch.Tensor

    @property
    def image_token_slice(self) -> slice:  # the name used in docs/ARCHITECTURE.md
        return self.image_slice

    @property
    def image_tokens(self) -> torch.Tensor:
        return self.sequence[:, self.image_slice]


@dataclass
class RegionBatch:
    """Region features of a batch, padded to the largest region count."""

    features: torch.Tensor  # [B, N, D]
    positions: torch.Tensor  # [B, N, P] (7-d UNITER or 4-d LXMERT)
    mask: torch.Tensor  # [B, N] bool


@dataclass
class PixelBatch:
    pixel_values: torch.Tensor  # [B, 3, H, W] uint8 (normalised on the device) or float32
    pixel_mask: torch.Tensor  # [B, H, W] bool with uint8 pixels, else long


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x)


def _batch_tensor(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised batch tensor (every element is written by the caller: rows copied, padding zeroed).
    In a DataLoader worker it is allocated in shared memory, as torch's default_collate does, so sending
    it to the training process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = 1
    for d in shape:
        numel *= int(d)
    storage = torch.UntypedStorage._new_shared(numel * torch.empty((), dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def _pad_rows(out: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Copy each row into `out` (an uninitialised [B, *dims] tensor, `rows[i]` [*dims_i] ≤ dims at the
    front of each dimension), zeroing only what lies outside a row (no pass over the whole batch)."""
    for i, r in enumerate(rows):
        dst = out[i]
        dst[tuple(slice(0, n) for n in r.shape)] = r
        for d, n in enumerate(r.shape):  # the padding: beyond the row's extent in each dimension
            if n < dst.shape[d]:
                dst[tuple(slice(0, m) for m in r.shape[:d]) + (slice(n, None),)] = 0
    return out


def seven_d_positions(boxes: torch.Tensor) -> torch.Tensor:
    """UNITER's 7-d box position [x1, y1, x2, y2, w, h, w*h] from normalised x1y1x2y2 boxes."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return torch.cat([boxes[:, :4], w[:, None], h[:, None], (w * h)[:, None]], dim=1)


def _map(batch: Any, fn) -> Any:
    """The same batch type with `fn` applied to each of its tensors."""
    return type(batch)(**{k: fn(v) for k, v in vars(batch).items()})


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """A RegionBatch / PixelBatch / TextBatch on `device` (from pinned memory the copies are asynchronous)."""
    return _map(batch, lambda t: t.to(device, non_blocking=non_blocking))


def pin(batch: Any) -> Any:
    return _map(batch, lambda t: t.pin_memory())


def collate_regions(images: Sequence[Any], feat_dim: int, pos_dim: int, preset: str,
                    dtype: torch.dtype | None = torch.float32) -> RegionBatch:
    """Pad per-image `RegionFeatures` (features [n, D], boxes [n, 4], positions [n, 7|4]) to a batch.

    pos_dim 7 (UNITER) derives 7-d positions from the boxes when the store gives 4-d ones;
    pos_dim 4 (LXMERT) keeps the first 4 columns (x1y1x2y2). Wrong feature dimension: DataError.
    `dtype` None keeps the store's feature dtype (fp16 stays fp16: half the bytes to pin and copy;
    the encoders widen on the device, exactly); features are copied once, straight into the batch.
    """
    feats, poss = [], []
    for i, img in enumerate(images):
        if not hasattr(img, "features"):
            raise DataError(
                f"image #{i}: preset '{preset}' takes region features, found {type(img).__name__}"
            )
        f = _tensor(img.features)
        if f.ndim != 2 or f.shape[1] != feat_dim:
            raise DataError(
                f"image #{i}: region features have shape {tuple(f.shape)}, "
                f"preset '{preset}' expects [n, {feat_dim}] (set the backbone's feat_dim to the store's)"
            )
        p = _tensor(img.positions).float() if getattr(img, "positions", None) is not None else None
        if p is None or p.shape[-1] < pos_dim:
            p = seven_d_positions(_tensor(img.boxes).float())
        feats.append(f)
        poss.append(p[:, :pos_dim])
    n = max([f.shape[0] for f in feats] + [1])
    b = len(feats)
    if dtype is None:
        dtype = torch.float16 if feats and all(f.dtype == torch.float16 for f in feats) else torch.float32
    features = _pad_rows(_batch_tensor((b, n, feat_dim), dtype), feats)
    positions = _pad_rows(_batch_tensor((b, n, pos_dim), torch.float32), poss)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, f in enumerate(feats):
        mask[i, : f.shape[0]] = True
    return RegionBatch(features, positions, mask)


def collate_pixels(images: Sequence[Any], preset: str) -> PixelBatch:
    """Stack `PixelInput`s (pixel_values [3, H, W], pixel_mask [H, W]), zero-padding to the largest H, W.
    uint8 pictures (the stores') stay uint8 with a bool mask — a quarter of float32's bytes to build, pin
    and copy — and are normalised on the device (`normalise_pixels`); anything else becomes float32."""
    vals, masks = [], []
    for i, img in enumerate(images):
        if not hasattr(img, "pixel_values"):
            raise DataError(f"image #{i}: preset '{preset}' takes pixels, found {type(img).__name__}")
        v = _tensor(img.pixel_values)
        if v.ndim != 3 or v.shape[0] != 3:
            raise DataError(f"image #{i}: pixel_values have shape {tuple(v.shape)}, expected [3, H, W]")
        m = getattr(img, "pixel_mask", None)
        vals.append(v)
        masks.append(_tensor(m) if m is not None else torch.ones(v.shape[1:], dtype=torch.bool))
    raw = all(v.dtype == torch.uint8 for v in vals)
    h = max(v.shape[1] for v in vals)
    w = max(v.shape[2] for v in vals)
    pixel_values = _pad_rows(_batch_tensor((len(vals), 3, h, w), torch.uint8 if raw else torch.float32), vals)
    pixel_mask = _pad_rows(_batch_tensor((len(vals), h, w), torch.bool if raw else torch.long), masks)
    return PixelBatch(pixel_values, pixel_mask)


# ---- the host half of the input path ----------------------------------------------------------------
# Batches are built on the host, without the model's weights (DataLoader workers build them), and
# travel as these types; the forward selects rows on the device instead of collating again.

@dataclass
class TextBatch:
    """Tokenised texts: ids [B, Lt] long and mask [B, Lt] bool, padded to the longest."""

    input_ids: torch.Tensor
    mask: torch.Tensor


@dataclass
class Prepared:
    """A host-built batch part with its per-row extents (text lengths; regions per image, or (h, w) of
    pixels), so that a selection of rows is cut to its own longest row: the same tensors the encoder
    got when the selection was collated on its own."""

    batch: Any  # TextBatch | RegionBatch | PixelBatch
    extents: tuple  # per row: (length,) or (h, w)

    def to(self, device, non_blocking: bool = False) -> "Prepared":
        return Prepared(to_device(self.batch, device, non_blocking), self.extents)

    def pin_memory(self) -> "Prepared":
        return Prepared(pin(self.batch), self.extents)

    def __len__(self) -> int:
        return len(self.extents)

    def select(self, rows: Sequence[int] | None = None, index: torch.Tensor | None = None) -> Any:
        """The batch of `rows` (all when None), cut to their longest extent; floating features as float32.
        `index` is `rows` as a tensor already on the batch's device (spares a host-to-device copy)."""
        rows = range(len(self.extents)) if rows is None else rows
        dims = len(self.extents[0]) if self.extents else 0
        cut = [max((self.extents[r][d] for r in rows), default=0) for d in range(dims)]
        whole = isinstance(rows, range) and len(rows) == len(self.extents)
        if not whole and index is None:
            first = next(iter(vars(self.batch).values()))
            index = torch.as_tensor(list(rows), dtype=torch.long).to(first.device, non_blocking=True)

        def take(t: torch.Tensor) -> torch.Tensor:
            t = t if whole else t.index_select(0, index)
            if isinstance(self.batch, PixelBatch):
                t = t[..., : max(cut[0], 1), : max(cut[1], 1)]
            else:
                t = t[:, : max(cut[0], 1)]
            return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t

        return _map(self.batch, take)


# Region position width per architecture (UNITER's 7-d positions, LXMERT's x1y1x2y2).
POS_DIM = {"uniter": 7, "lxmert": 4}


class BatchInputs:
    """Host-side, picklable input preparation of one backbone: tokenizer and image collation, no weights.

    Tokenisation is cached per text string; texts longer than `max_text_len` tokens are truncated
    (keeping the final [SEP]) with one warning per instance."""

    def __init__(self, tokenizer: Any, max_text_len: int, preset: str, image_input: str, feat_dim: int | None,
                 pos_dim: int, patch_size: int | None = None, cache: dict | None = None):
        self.tokenizer, self.max_text_len, self.preset = tokenizer, max_text_len, preset
        self.image_input, self.feat_dim, self.pos_dim, self.patch_size = image_input, feat_dim, pos_dim, patch_size
        self.cache = {} if cache is None else cache
        self.pad = tokenizer.pad_token_id or 0
        self._warned = False

    def token_ids(self, text: str) -> list[int]:
        ids = self.cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
            if len(ids) > self.max_text_len:
                if not self._warned:
                    warnings.warn(f"{self.preset}: text of {len(ids)} tokens truncated to max_text_len="
                                  f"{self.max_text_len} (first: {text[:40]!r})", stacklevel=3)
                    self._warned = True
                ids = ids[: self.max_text_len - 1] + ids[-1:]
            self.cache[text] = ids
        return ids

    def texts(self, texts: Sequence[str]) -> Prepared:
        rows = [self.token_ids(t) for t in texts]
        length = max([len(r) for r in rows] + [1])
        # one tensor from padded lists (a tensor a row cost ~15 µs each: a tenth of a UNITER step's host time)
        input_ids = torch.tensor([r + [self.pad] * (length - len(r)) for r in rows], dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        return Prepared(TextBatch(input_ids.view(len(rows), length), mask), tuple((len(r),) for r in rows))

    def images(self, images: Sequence[Any]) -> Prepared:
        """Collated images in the store's dtype (see `collate_regions`), with each row's extent."""
        if self.image_input == "pixels":
            return Prepared(collate_pixels(images, self.preset),
                            tuple((int(img.pixel_values.shape[1]), int(img.pixel_values.shape[2])) for img in images))
        batch = collate_regions(images, self.feat_dim, self.pos_dim, self.preset, dtype=None)
        return Prepared(batch, tuple((int(_tensor(img.features).shape[0]),) for img in images))

    def text_tokens(self, text: str) -> int:
        return len(self.token_ids(text))

    def image_tokens(self, size: Any) -> int:
        """Tokens an image adds to the sequence — its regions, or its patches and the image [CLS] — from its
        size (`store.size(key)`: a region count or (height, width)) or the decoded image."""
        if not isinstance(size, (int, tuple)):
            size = image_size(size)
        if self.image_input == "pixels":
            h, w = size
            return (int(h) // self.patch_size) * (int(w) // self.patch_size) + 1
        return int(size)


class Backbone(nn.Module):
    """A vision-and-language encoder built from a preset.

    Attributes: `preset` (name), `family` (recipe family: toy, minilm, uniter, lxmert, vilt),
    `arch` (uniter, lxmert, vilt), `image_input` ("regions" | "pixels"), `hidden_size`,
    `tokenizer` (PreTrainedTokenizerFast), `config` (JSON-able architecture dict, saved in
    backbone.json), `max_text_len` (texts are truncated to it, with a warning; it never exceeds
    the position table).
    """

    arch: str = ""
    image_input: str = "regions"
    hf_prefix: str = ""  # module name of a wrapped transformers model ("lxmert.", "vilt.")

    def __init__(self, preset: str, family: str, config: dict, tokenizer: Any):
        super().__init__()
        self.preset = preset
        self.family = family
        self.config = dict(config)
        self.tokenizer = tokenizer
        self.max_text_len = int(config["max_text_len"])
        # MLM/ITM/MRM head weights of the checkpoint this backbone was loaded from, in PretrainModel's
        # names (see pretrained_heads.py); saved beside the weights so θ0 keeps them.
        self.pretrained_heads: dict[str, torch.Tensor] = {}
        self._token_cache: dict[str, list[int]] = {}
        self._inputs: BatchInputs | None = None

    # ---- subclass hooks -------------------------------------------------------------------
    def _encode_batch(self, input_ids: torch.Tensor, text_mask: torch.Tensor, images: Any) -> Encoding:
        raise NotImplementedError

    def collate(self, images: Sequence[Any]) -> RegionBatch | PixelBatch:
        """Pad the per-example image inputs of a batch into tensors (on the backbone's device)."""
        raise NotImplementedError

    def word_embeddings(self) -> nn.Embedding:
        """The text token embedding table (the MLM decoder is tied to it)."""
        raise NotImplementedError

    def _prunable_prefixes(self) -> list[str]:
        """Module-name prefixes whose nn.Linear weights are prunable, in documented order."""
        raise NotImplementedError

    # ---- shared behaviour -----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_max_text_len(self, n: int) -> "Backbone":
        """Keep at most `n` text tokens from now on (`finetune.max_text_len`), capped by the position
        table (ViLT has 40 text positions). Shorter texts are unaffected: batches pad to their longest
        text, so one generous cap (UNITER's 220 for VCR rationales) costs the short-text tasks nothing."""
        n = int(n)
        if n < 2:
            raise ConfigError(f"max_text_len must be at least 2 ([CLS] and [SEP]), found {n}")
        n = min(n, int(self.config.get("max_position", n)))
        if n != self.max_text_len:
            self.max_text_len = n
            self._token_cache.clear()
            self._inputs = None
        return self

    def inputs(self) -> BatchInputs:
        """The host half of this backbone's input path (tokenizer, collation; picklable, no weights)."""
        if self._inputs is None:
            self._inputs = BatchInputs(self.tokenizer, self.max_text_len, self.preset, self.image_input,
                                       self.config.get("feat_dim"), POS_DIM.get(self.arch, 7),
                                       self.config.get("patch_size"), cache=self._token_cache)
        return self._inputs

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, Lt] (with [CLS] ... [SEP], padded) and bool mask, on the backbone's device.

        Texts longer than `max_text_len` tokens are truncated (keeping the final [SEP]) and a
        warning is issued once per backbone (see `BatchInputs`).
        """
        text = self.inputs().texts(texts).batch
        dev = self.device
        return text.input_ids.to(dev), text.mask.to(dev)

    def encode(self, texts: Sequence[str], images: Sequence[Any]) -> Encoding:
        """Encode B (text, image) pairs; `images` are the image store's per-image objects."""
        if len(texts) != len(images):
            raise DataError(f"encode: {len(texts)} texts but {len(images)} images")
        input_ids, text_mask = self.tokenize(texts)
        return self._encode_batch(input_ids, text_mask, self.collate(images))

    def encode_tokens(self, input_ids: torch.Tensor, text_mask: torch.Tensor, images: Any) -> Encoding:
        """Encode already-tokenised (e.g. masked) text with collated images (see `collate`)."""
        return self._encode_batch(input_ids, text_mask, images)

    def prunable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, weight) of every nn.Linear under the family's prunable prefixes, in that order.

        Names are relative to the backbone. Embeddings, biases, LayerNorms, pooler and heads are
        never included.
        """
        modules = dict(self.named_modules())
        out = []
        for prefix in self._prunable_prefixes():
            for name, mod in modules.items():
                if name.startswith(prefix) and isinstance(mod, nn.Linear):
                    out.append((f"{name}.weight", mod.weight))
        return out

    def fingerprint(self) -> str:
        """Fingerprint of the prunable set's names and shapes (tickets check they fit)."""
        return fingerprint_of(self.prunable_parameters())

    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors, backbone.json (preset + config), tokenizer/ and, when the checkpoint
        had pre-training heads, heads.safetensors to `directory`."""
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / "model.safetensors", save(state))
        if self.pretrained_heads:
            atomic_write_bytes(directory / HEADS_FILE, save({k: v.contiguous() for k, v in self.pretrained_heads.items()}))
        atomic_write_json(
            directory / "backbone.json",
            {"format": BACKBONE_FORMAT, "preset": self.preset, "family": self.family,
             "arch": self.arch, "config": self.config},
        )
        return directory

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign checkpoint layout to this backbone's names (identity for our own files).

        Families wrapping a transformers model under `hf_prefix` accept both the bare model layout
        and the task-model layout (`<prefix>.` keys, heads dropped). Non-persistent buffers
        (position_ids, token_type_ids) that older files carry are dropped.
        """
        own = self.state_dict()
        prefix = self.hf_prefix
        if prefix and any(k.startswith(prefix) for k in state):
            state = {k: v for k, v in state.items() if k.startswith(prefix)}  # task heads dropped
        elif prefix:
            state = {prefix + k: v for k, v in state.items()}  # the bare transformers model layout
        return {k: v for k, v in state.items()
                if k in own or not k.endswith(("position_ids", "embeddings.token_type_ids"))}

    def load_pretrained(self, path_or_id: str | Path) -> "Backbone":
        """Load weights from safetensors / a weights-only torch state dict / a model directory."""
        checkpoint.load_pretrained(self, path_or_id)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
