"""Placing modules on devices (shared by the backbones and the training loop, which sit side by side)."""

from __future__ import annotations

import torch
from torch import nn


def place(module: nn.Module, device: torch.device) -> nn.Module:
    """Move `module` to `device` unless every parameter and buffer is there already (then it is left
    alone: `nn.Module.to` re-wraps fake-tensor parameters, which the device tests use)."""
    if any(t.device != device for t in (*module.parameters(), *module.buffers())):
        module.to(device)
    return module
