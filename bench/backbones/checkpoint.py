"""Safe checkpoint reading: safetensors, or torch state dicts loaded with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from bench.backbones.pretrained_heads import head_state
from bench.core.errors import CheckpointError

_SHOW = 5  # keys listed in a one-line error


def _first(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat name -> tensor dict from a .safetensors file or a torch file.

    Torch files are loaded with `weights_only=True`: a file that needs pickle code to load is
    refused with a one-line CheckpointError. A {'state_dict': ...} or {'model': ...} wrapper is
    unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "pickle" in str(e).lower():
            raise CheckpointError(
                f"{path}: refused, the checkpoint needs pickle code to load (only plain tensor state dicts "
                f"or safetensors are accepted)"
            ) from None
        raise CheckpointError(f"{path}: cannot read checkpoint ({msg[:160]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of parameter name -> tensor, found {type(obj).__name__}")
    return dict(obj)


def load_state_into(module: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                    allow_missing: tuple[str, ...] = ()) -> None:
    """Load `state` strictly into `module`; one-line CheckpointError listing the first bad keys.

    Keys starting with a prefix in `allow_missing` may be absent (e.g. a new image embedder).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_first(unexpected)}")
        raise CheckpointError(f"{what}: " + "; ".join(parts))
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{what}: {len(bad)} tensors have the wrong shape (checkpoint vs model): {_first(bad)}")
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_allowed() -> bool:
    """Hub ids are tried only when the user has not declared the machine offline."""
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes", "on")


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local file or directory, or (online only) a hub id downloaded into the HF cache."""
    p = Path(path_or_id)
    if p.exists():
        return p
    text = str(path_or_id)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise CheckpointError(f"{text}: checkpoint not found")
    if not hub_allowed():
        raise CheckpointError(f"{text}: not a local path, and ticketbench runs offline: set backbone.checkpoint "
                              "to a local file or folder (HF_HUB_OFFLINE=0 allows hub ids)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.txt", *WEIGHT_FILES]))
    except Exception as e:
        raise CheckpointError(f"{text}: hub download failed ({type(e).__name__})") from None


def weights_file(directory: Path) -> Path:
    """The weights file of a saved backbone or a transformers model directory."""
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no {' or '.join(WEIGHT_FILES)} in the directory")


def load_pretrained(backbone: nn.Module, path_or_id: str | Path) -> None:
    """Load weights into `backbone` from a file, a directory or (online) a hub id.

    The backbone's `adapt_checkpoint` maps foreign layouts (official UNITER names, transformers'
    LxmertForPreTraining / ViltForMaskedLM prefixes) to its own; then loading is strict. The
    checkpoint's pre-training heads, when it has them, go to `backbone.pretrained_heads`.
    """
    p = resolve_checkpoint(path_or_id)
    state = read_state_dict(weights_file(p) if p.is_dir() else p)
    heads = head_state(getattr(backbone, "arch", ""), state)
    state = backbone.adapt_checkpoint(state)
    load_state_into(backbone, state, what=str(path_or_id))
    backbone.pretrained_heads = heads
