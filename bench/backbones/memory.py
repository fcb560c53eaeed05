"""What a training micro-batch holds in memory, before it runs: a per-token activation model per backbone,
and the split of a recipe's micro-batch into smaller ones (same effective batch by gradient accumulation)
when it would not fit a GPU's memory budget.

Activations are the tensors autograd saves for the backward pass. Per token and per transformer layer of
hidden size d, FFN size f and h heads, over a sequence of L tokens (one layer's saved tensors, counted with
a saved-tensors hook on CPU: tests/test_memory_model.py):

  e × (d [QKV input] + 3d [q, k, v] + d [attention context] + d [FFN input] + 2f [before and after GELU])
  + m × 2d [the two dropout masks] + n × 2d [the two LayerNorm inputs]
  + attention: materialised ("math", or an eager implementation): h × L × (e [probabilities] + m [dropout
    mask] + e [dropped probabilities]); memory-efficient / flash: 4 × h bytes (the log-sum-exp)

with e the activations' element size, m a dropout mask's (0 without dropout: ViLT) and n LayerNorm's input
(fp32 under autocast). `GPU` is bf16 autocast on CUDA (e 2, m 1: a bool mask, n 4); `CPU` is float32
(e 4, m 4: CPU dropout keeps a float mask, n 4). LXMERT's cross-modality layer is one layer plus one more
attention block per stream (its cross-attention); ViLT's patch projection keeps each patch's pixels
(3 × 32 × 32 an image token). Weights, gradients and AdamW's two moments add 16 bytes a parameter, bf16
copies of the matmul weights 2 more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from bench.backbones.presets import PRESETS, count_parameters
from bench.core.errors import ConfigError
from bench.core.settings import TrainSettings

GIB = 1024 ** 3
VILT_SHORTER, VILT_LONGER = 384, 640  # ViLT's resize: shorter side 384, longer at most 640 (1333/800 × 384)
LXMERT_REGIONS = 36  # LXMERT's released features: 36 fixed boxes an image


@dataclass(frozen=True)
class Precision:
    name: str
    element: int  # bytes of an activation
    mask: int  # bytes of a dropout-mask element
    norm: int  # bytes of a LayerNorm input
    attention: str  # "efficient" (flash / memory-efficient kernel) or "math" (materialised scores)


GPU = Precision("bf16 autocast, memory-efficient attention", 2, 1, 4, "efficient")
GPU_MATH = Precision("bf16 autocast, materialised attention", 2, 1, 4, "math")
CPU = Precision("float32, materialised attention", 4, 4, 4, "math")


def gpu_precision(preset: str) -> Precision:
    """How `preset` trains on a GPU here: UNITER's encoder calls scaled_dot_product_attention, which picks the
    memory-efficient kernel for a masked batch; transformers' LXMERT and ViLT have only eager attention."""
    return GPU if PRESETS.get(preset).arch == "uniter" else GPU_MATH


def _layer(d: int, f: int, h: int, q: float, k: float, p: Precision, dropout: bool, ffn: bool = True,
           blocks: int = 1) -> float:
    """Saved bytes of one layer for `q` query tokens attending over `k` key tokens (per sequence):
    `blocks` attention blocks, then the FFN."""
    m = p.mask if dropout else 0
    attn_block = p.element * (d + 3 * d + d) + m * d + p.norm * d
    if p.attention == "math":
        scores = h * k * (p.element + m + (p.element if dropout else 0))
    else:
        scores = 4 * h
    ffn_part = (p.element * (d + 2 * f) + m * d + p.norm * d) if ffn else 0.0
    return q * (blocks * (attn_block + scores) + ffn_part)


def activation_bytes(preset: str, text: float, image: float, precision: Precision = GPU) -> float:
    """Bytes autograd saves for one training sequence of `text` + `image` tokens through `preset`."""
    c = PRESETS.get(preset).config
    arch = PRESETS.get(preset).arch
    d, f, h = c["hidden_size"], c["intermediate_size"], c["num_heads"]
    dropout = c.get("dropout", 0.1) > 0
    if arch == "lxmert":
        n = text + image
        out = c["l_layers"] * _layer(d, f, h, text, text, precision, dropout)
        out += c["r_layers"] * _layer(d, f, h, image, image, precision, dropout)
        # A cross layer: cross-attention, self-attention and an FFN per stream.
        out += c["x_layers"] * (_layer(d, f, h, text, image, precision, dropout, blocks=1, ffn=False)
                                + _layer(d, f, h, image, text, precision, dropout, blocks=1, ffn=False)
                                + _layer(d, f, h, text, text, precision, dropout)
                                + _layer(d, f, h, image, image, precision, dropout))
        embed = n * precision.element * 2 * d
    else:
        n = text + image
        out = c["num_layers"] * _layer(d, f, h, n, n, precision, dropout)
        embed = n * precision.element * 2 * d
        if arch == "vilt":  # the patch projection keeps each patch's pixels
            embed += image * precision.element * 3 * c["patch_size"] ** 2
    return out + embed


@lru_cache(maxsize=None)
def state_bytes(preset: str) -> float:
    """Weights, gradients and AdamW's moments in float32 (16 bytes a parameter) + bf16 weight copies (2)."""
    return 18.0 * count_parameters(preset)


def micro_batch_bytes(preset: str, settings: TrainSettings, text: int, image: int, sequences: int,
                      precision: Precision = GPU) -> float:
    """Peak bytes of one training micro-batch of `settings` (its activations + the training state): a
    token-budget batch holds at most batch_tokens tokens, an example batch batch_size × sequences sequences."""
    seq = text + image
    per_sequence = activation_bytes(preset, text, image, precision)
    rows = settings.batch_tokens / seq if settings.batch_tokens else settings.batch_size * sequences
    return rows * per_sequence + state_bytes(preset)


def fit_micro_batch(settings: TrainSettings, preset: str, text: int, image: int, sequences: int,
                    budget_gib: float, precision: Precision = GPU) -> TrainSettings:
    """`settings` with its micro-batch split into the fewest equal parts that fit `budget_gib`, and its
    gradient accumulation multiplied alike: the same examples (or tokens) an optimizer step. Unchanged when
    it fits; a ConfigError when even one example does not."""
    budget = budget_gib * GIB
    if micro_batch_bytes(preset, settings, text, image, sequences, precision) <= budget:
        return settings
    size = settings.batch_tokens or settings.batch_size
    unit = (text + image) if settings.batch_tokens else 1  # the smallest micro-batch: one example
    for parts in range(2, size // unit + 1):
        if settings.batch_tokens is None and size % parts:
            continue  # example batches split evenly (every micro-batch's mean weighs alike)
        trial = dataclasses.replace(settings, grad_accum=settings.grad_accum * parts,
                                    **({"batch_tokens": size // parts} if settings.batch_tokens
                                       else {"batch_size": size // parts}))
        if micro_batch_bytes(preset, trial, text, image, sequences, precision) <= budget:
            return trial
    raise ConfigError(f"finetune.memory_gib: {budget_gib:g} GiB holds not even one example of {preset} "
                      f"({text} + {image} tokens, {sequences} sequence(s)); raise it")


def describe_fit(preset: str, settings: TrainSettings, text: int, image: int, sequences: int,
                 precision: Precision = GPU) -> str:
    """'12.3 GiB' for a micro-batch, in GiB."""
    return f"{micro_batch_bytes(preset, settings, text, image, sequences, precision) / GIB:.1f} GiB"




def vilt_image_tokens(height: int, width: int, patch: int = 32) -> int:
    """Patches + [CLS] of one picture after ViLT's resize (shorter side 384, longer at most 640)."""
    scale = VILT_SHORTER / min(height, width)
    if max(height, width) * scale > VILT_LONGER:
        scale = VILT_LONGER / max(height, width)
    return int(height * scale) // patch * (int(width * scale) // patch) + 1


def text_cap(preset: str, *caps: int | None) -> int:
    """Text tokens a sequence holds at most: the smallest of `caps` (the recipe's text_len,
    finetune.max_text_len) and the preset's position table (`Backbone.set_max_text_len`)."""
    return min(c for c in (*caps, PRESETS.get(preset).config["max_position"]) if c)


def widest_image_tokens(preset: str, max_bb: int) -> int:
    """The most tokens an image of `preset` takes in a batch: ViLT's widest picture (a batch pads to it),
    LXMERT's 36 boxes, or UNITER's `max_bb`."""
    spec = PRESETS.get(preset)
    c = spec.config
    if spec.image_input == "none":  # a text-only backbone (the BERT study)
        return 0
    if spec.image_input == "pixels":
        if c["image_size"] != VILT_SHORTER:  # a toy ViLT: square pictures of its own size
            return (c["image_size"] // c["patch_size"]) ** 2 + 1
        return vilt_image_tokens(VILT_SHORTER, VILT_LONGER, c["patch_size"])
    return LXMERT_REGIONS if spec.arch == "lxmert" else max_bb


def fit_recipe(settings: TrainSettings, preset: str, task, text: int, max_bb: int, budget_gib: float) -> TrainSettings:
    """`fit_micro_batch` for a task's recipe on `preset`: texts of `text` tokens, the widest images, the task's
    sequences an example, the preset's GPU precision."""
    return fit_micro_batch(settings, preset, text, widest_image_tokens(preset, max_bb), task.sequences,
                           budget_gib, gpu_precision(preset))
