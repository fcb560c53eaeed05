"""`TrainSettings`: the one type for optimisation settings — a task's recipe per backbone family,
pre-training, an IMP round and a fine-tuning run are all `TrainSettings`; config fields left at
`None` mean "the recipe's", and a pair's effective settings are `dataclasses.replace(recipe, ...)`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from bench.core.hparams import hp
from bench.core.validate import (
    BETAS,
    BOOL,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    one_of,
)


@dataclass(frozen=True)
class TrainSettings:
    """Resolved optimisation settings of one training call (AdamW, warm-up then linear decay to 0)."""

    steps: int = hp(100, "optimizer steps", check=POSITIVE_INT)
    batch_size: int = hp(32, "examples per step (per accumulation micro-batch)", check=POSITIVE_INT)
    batch_tokens: Optional[int] = hp(None, "token budget of a micro-batch instead of `batch_size` examples: text "
                                           "tokens plus image tokens per example (UNITER's recipes are in tokens; "
                                           "None = batch_size examples)", check=POSITIVE_INT)
    lr: float = hp(1e-4, "peak learning rate", check=POSITIVE)
    warmup: float = hp(0.1, "fraction of steps for linear warm-up, then linear decay to 0", check=FRACTION)
    weight_decay: float = hp(0.01, "AdamW weight decay", check=NON_NEGATIVE)
    betas: tuple = hp((0.9, 0.98), "AdamW betas", check=BETAS)
    grad_clip: float = hp(2.0, "gradient-norm clipping (0 = off)", check=NON_NEGATIVE)
    grad_accum: int = hp(1, "gradient accumulation steps", check=POSITIVE_INT)
    head_lr_mult: float = hp(1.0, "learning-rate multiplier of the task head", check=POSITIVE)
    seed: int = hp(0, "seed of data order and head initialisation", check=NON_NEGATIVE_INT)
    bf16: bool = hp(True, "bf16 autocast on CUDA (ignored on CPU)", check=BOOL)
    hard_negatives: int = hp(0, "retrieval's margin loss: rank the hardest of this many sampled in-batch negatives "
                                "each way, mined by forward passes without gradients (0 = UNITER's released "
                                "default: one sampled negative each way, no mining)", check=NON_NEGATIVE_INT)
    adv_steps: int = hp(0, "adversarial training: ascent steps K on embedding perturbations per step (0 = off; "
                           "FreeLB / VILLA, bench/training/adversarial.py)", check=NON_NEGATIVE_INT)
    adv_epsilon: float = hp(1e-2, "adversarial training: L2 radius ε of each example's perturbation",
                            check=NON_NEGATIVE)
    adv_step_size: float = hp(1e-3, "adversarial training: ascent step size α", check=NON_NEGATIVE)
    adv_eval_steps: int = hp(0, "robust evaluation: after fine-tuning, also score the eval split under the "
                                "attack of adv_epsilon / adv_step_size with this many ascent steps (record "
                                "field `robust`; 0 = off; bench/training/adversarial.py)", check=NON_NEGATIVE_INT)
    optimizer: str = hp("adamw", "adamw (torch's AdamW, no decay on biases and LayerNorms) or bertadam (LXMERT's "
                                 "BertAdam: no bias correction, eps 1e-6, weight decay on every parameter)",
                         check=one_of("adamw", "bertadam"))

    def override(self, overrides: Any = None, **fixed) -> "TrainSettings":
        """These settings with every non-None field of `overrides` (a dataclass or mapping whose
        names match) and the `fixed` keyword values applied."""
        if dataclasses.is_dataclass(overrides):
            overrides = {f.name: getattr(overrides, f.name) for f in dataclasses.fields(overrides)}
        names = {f.name for f in dataclasses.fields(self)}
        changes = {k: v for k, v in (overrides or {}).items() if k in names and v is not None}
        changes.update(fixed)
        if "betas" in changes:
            changes["betas"] = tuple(changes["betas"])
        return dataclasses.replace(self, **changes)
