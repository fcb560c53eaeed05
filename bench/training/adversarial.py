"""Adversarial training in the embedding space (FreeLB, Zhu et al. 2020; VILLA, Gan et al. 2020).

The text embeddings and the image embeddings (UNITER's region projection, LXMERT's visual projection,
ViLT's patch projection) get perturbations δ of L2 norm at most ε per example. Each training step
runs K ascent steps on δ (normalised gradient steps of size α, projected back onto the ε-ball) and
trains on the mean of the clean loss and the K adversarial losses: FreeLB's objective. VILLA adds a
KL term between clean and adversarial predictions, which this regime does not have, so it is not called
VILLA here. The regime lives in `TrainSettings` (`adv_steps`, `adv_epsilon`, `adv_step_size`), so it is
part of every search's and run's identity; `adv_steps=0` is standard training. `robust_evaluate`
scores a fine-tuned model under the same attack (`adv_eval_steps`: a run's record then carries
`robust`), so clean and robust accuracy of either regime are measured alike.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from bench.core.errors import ConfigError
from bench.training.batching import eval_index_batches

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


class Perturbation:
    """Per-example perturbations δ added by forward hooks to the outputs of a backbone's text and image
    embedders while active (`with`): the first forward after `reset()` creates δ = 0 of each output's
    shape; `ascend(loss)` takes one normalised gradient step of size α on every δ and projects each
    example's δ back onto the ε-ball. Training (`adversarial_loss_fn`) and the robust evaluation
    (`robust_evaluate`) share it, so both use the same attack."""

    def __init__(self, backbone: nn.Module, epsilon: float, step_size: float):
        self.modules, self.epsilon, self.step_size = perturbed_modules(backbone), epsilon, step_size
        self.deltas: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, module, _inputs, output):
        d = self.deltas.get(id(module))
        if d is None:  # the clean pass: δ starts at 0 and takes the output's shape, device and dtype
            d = self.deltas[id(module)] = torch.zeros_like(output, requires_grad=True)
        return output + d

    def __enter__(self) -> "Perturbation":
        self.reset()
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def reset(self) -> None:
        self.deltas.clear()

    def ascend(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        keys = list(self.deltas)
        grads = torch.autograd.grad(loss, [self.deltas[i] for i in keys], retain_graph=retain_graph,
                                    allow_unused=True)
        for i, g in zip(keys, grads):
            d = self.deltas[i].detach()
            if g is not None:
                d = d + self.step_size * g / _per_example_norm(g)
            d = d * (self.epsilon / _per_example_norm(d)).clamp(max=1.0)
            self.deltas[i] = d.requires_grad_(True)


def _check(steps: int, epsilon: float, step_size: float, what: str) -> None:
    if steps < 1 or not epsilon > 0 or not step_size > 0:
        raise ConfigError(f"{what}: expected steps >= 1, adv_epsilon > 0 and adv_step_size > 0, "
                          f"found {steps}, {epsilon}, {step_size}")


def adversarial_loss_fn(model: nn.Module, loss_fn: Callable, steps: int, epsilon: float,
                        step_size: float) -> Callable:
    """loss_fn(batch) → the mean of the clean and K adversarial losses (a tensor, or a dict of parts)."""
    _check(steps, epsilon, step_size, "adversarial training (adv_steps)")
    perturbation = Perturbation(model.backbone, epsilon, step_size)

    def loss(batch):
        outs = []
        with perturbation:
            for k in range(steps + 1):
                out = loss_fn(batch)
                outs.append(out)
                if k == steps:
                    break
                perturbation.ascend(sum(out.values()) if isinstance(out, dict) else out, retain_graph=True)
        if isinstance(outs[0], dict):  # pre-training may sample another objective per pass
            names = dict.fromkeys(n for o in outs for n in o)
            return {name: sum(o[name] for o in outs if name in o) / len(outs) for name in names}
        return sum(outs) / len(outs)

    # The same input path as the wrapped loss: its host half prepares the batches, once for all K + 1 passes.
    loss.prepare, loss.tokens = getattr(loss_fn, "prepare", None), getattr(loss_fn, "tokens", None)
    return loss


# Heads whose gold label is one index, so the attack has one loss to ascend; others are not scored robustly.
ROBUST_HEADS = ("classify", "region")


def robust_evaluate(model, spec, examples: list, store, steps: int, epsilon: float, step_size: float,
                    batch_size: int = 64) -> tuple[dict, float]:
    """The task's metrics under the training regime's attack: per eval batch, K ascent steps on δ against
    the gold labels' loss (dropout off), then the prediction with δ_K added — robust accuracy under the
    same ε, α and K that `adv_steps` trains with. Returns (metrics, seconds). Classify and region heads
    (the heads whose gold label is one index); others are refused with a one-line error."""
    _check(steps, epsilon, step_size, f"robust evaluation of {spec.name} (adv_eval_steps)")
    if getattr(model, "kind", None) not in ROBUST_HEADS:
        raise ConfigError(f"robust evaluation (finetune.adv_eval_steps): task {spec.name} has head "
                          f"'{getattr(model, 'kind', '?')}'; expected a classify or region head")
    t0 = time.perf_counter()
    prepare, predictions = model.batcher(store), {}  # with targets: the attack ascends the gold labels' loss
    was_training = model.training
    model.eval()
    try:
        with Perturbation(model.backbone, epsilon, step_size) as perturbation:
            for idx in eval_index_batches(examples, batch_size):
                batch = prepare([examples[i] for i in idx])
                perturbation.reset()
                with torch.enable_grad():
                    for _ in range(steps):
                        perturbation.ascend(model.forward_loss(batch).float())
                predictions.update(model.predict_batch(batch))  # δ_K stays in the hooks
        metrics = spec.evaluate(examples, predictions)
    finally:
        model.train(was_training)
    return metrics, time.perf_counter() - t0
