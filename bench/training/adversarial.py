"""Adversarial training in the embedding space (FreeLB, Zhu et al. 2020; VILLA, Gan et al. 2020).

The text embeddings and the image embeddings (UNITER's region projection, LXMERT's visual projection,
ViLT's patch projection) get perturbations δ of L2 norm at most ε per example. Each training step
runs K ascent steps on δ (normalised gradient steps of size α, projected back onto the ε-ball) and
trains on the mean of the clean loss and the K adversarial losses — VILLA's recipe without its KL
term. The regime lives in `TrainSettings` (`adv_steps`, `adv_epsilon`, `adv_step_size`), so it is
part of every search's and run's identity; `adv_steps=0` is standard training.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bench.core.errors import ConfigError

# Image embedders perturbed, by module name in each backbone family (the first match is used).
IMAGE_EMBEDDERS = (
    "img_embeddings.img_linear",  # UNITER: region features → hidden
    "lxmert.encoder.visn_fc.visn_fc",  # LXMERT: visual feature projection
    "vilt.embeddings.patch_embeddings.projection",  # ViLT: patch projection
)


def perturbed_modules(backbone: nn.Module) -> list[nn.Module]:
    """The text embedding and the image embedding modules of a backbone."""
    named = dict(backbone.named_modules())
    image = [named[n] for n in IMAGE_EMBEDDERS if n in named]
    if not image:
        raise ConfigError(f"adversarial training: backbone {getattr(backbone, 'preset', '?')} has none of the "
                          f"image embedders {', '.join(IMAGE_EMBEDDERS)}")
    return [backbone.word_embeddings(), image[0]]


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def adversarial_loss_fn(model: nn.Module, loss_fn: Callable, steps: int, epsilon: float,
                        step_size: float) -> Callable:
    """loss_fn(batch) → the mean of the clean and K adversarial losses (a tensor, or a dict of parts)."""
    if steps < 1 or not epsilon > 0 or not step_size > 0:
        raise ConfigError(f"adversarial training: expected adv_steps >= 1, adv_epsilon > 0 and adv_step_size > 0, "
                          f"found {steps}, {epsilon}, {step_size}")
    modules = perturbed_modules(model.backbone)
    deltas: dict[int, torch.Tensor] = {}

    def hook(module, _inputs, output):
        d = deltas.get(id(module))
        if d is None:  # the clean pass: δ starts at 0 and takes the output's shape, device and dtype
            d = deltas[id(module)] = torch.zeros_like(output, requires_grad=True)
        return output + d

    def loss(batch):
        handles = [m.register_forward_hook(hook) for m in modules]
        deltas.clear()
        try:
            outs = []
            for k in range(steps + 1):
                out = loss_fn(batch)
                outs.append(out)
                if k == steps:
                    break
                scalar = sum(out.values()) if isinstance(out, dict) else out
                keys = list(deltas)
                grads = torch.autograd.grad(scalar, [deltas[i] for i in keys], retain_graph=True, allow_unused=True)
                for i, g in zip(keys, grads):
                    d = deltas[i].detach()
                    if g is not None:
                        d = d + step_size * g / _per_example_norm(g)
                    # Project each example's δ back onto the ε-ball.
                    d = d * (epsilon / _per_example_norm(d)).clamp(max=1.0)
                    deltas[i] = d.requires_grad_(True)
        finally:
            for h in handles:
                h.remove()
        if isinstance(outs[0], dict):  # pre-training may sample another objective per pass
            names = dict.fromkeys(n for o in outs for n in o)
            return {name: sum(o[name] for o in outs if name in o) / len(outs) for name in names}
        return sum(outs) / len(outs)

    # The same input path as the wrapped loss: its host half prepares the batches, once for all K + 1 passes.
    loss.prepare, loss.tokens = getattr(loss_fn, "prepare", None), getattr(loss_fn, "tokens", None)
    return loss
