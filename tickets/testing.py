"""A tiny transformer-ish model and a real toy search context, for tests, docs and plugin authors."""

from __future__ import annotations

import torch
from torch import nn

from tickets.activations import collect_input_stats
from tickets.enforce import MaskEnforcer
from tickets.fingerprint import fingerprint_of
from tickets.search import SearchContext, TrainResult
from tickets.select import select_prunable


class ToyBlock(nn.Module):
    def __init__(self, d: int, ff: int):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff_in, self.ff_out = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        att = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        x = self.ln1(x + self.o(att @ v))
        return self.ln2(x + self.ff_out(torch.relu(self.ff_in(x))))


class ToyTransformer(nn.Module):
    """Embedding → n blocks → pooled regression head. Prunable: the blocks' linear weights."""

    preset = "toy-test"

    def __init__(self, d: int = 16, ff: int = 32, layers: int = 2, vocab: int = 20, out: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(ToyBlock(d, ff) for _ in range(layers))
        self.pooler = nn.Linear(d, d)
        self.head = nn.Linear(d, out)

    def forward(self, tokens):
        return self.forward_embeddings(self.embed(tokens))

    def forward_embeddings(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(torch.tanh(self.pooler(x.mean(1)))).squeeze(-1)

    def prunable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters()
                if n.startswith("blocks.") and n.endswith(".weight") and p.dim() == 2]

    def fingerprint(self) -> str:
        return fingerprint_of(self.prunable_parameters())


class ToyLinear(nn.Module):
    """A bias-free ReLU chain W_L … W_1 x: with positive weights and inputs it is linear, so SynFlow's
    synaptic flow has a closed form (tests of data-free methods). Prunable: every weight."""

    preset = "toy-linear"

    def __init__(self, sizes=(4, 5, 3, 2), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            x = torch.relu(x) if i < len(self.layers) - 1 else x
        return x

    def prunable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters()]


def flow_fn_for(model: nn.Module, named: list, ones_input):
    """SynFlow's flow_fn for `model`: dR/dw with R = sum(model(1)) where every parameter is |θ| (and the
    prunable ones |w| ⊙ m), computed in float64 on a copy (the model is left untouched)."""
    import copy

    def flow(weights: dict, masks: dict) -> dict:
        m = copy.deepcopy(model).double().eval()
        live = dict(m.named_parameters())
        with torch.no_grad():
            for p in m.parameters():
                p.abs_()
            for n, _ in named:
                live[n].copy_(weights[n].abs().double() * masks[n])
        m.zero_grad()
        ones_input(m).sum().backward()
        return {n: live[n].grad.detach().float().clone() for n, _ in named}

    return flow


def linear_context(sizes=(4, 5, 3, 2), **kw) -> SearchContext:
    """A data-free SearchContext around `ToyLinear`: only `flow_fn` works (train and score_fn raise)."""
    model = ToyLinear(sizes)
    named = select_prunable(model)

    def no_data(*_, **__):
        raise AssertionError("this context has no data: a data-free method asked for it")

    kw.setdefault("sparsities", (0.5, 0.8))
    kw.setdefault("source", "pretrain")
    return SearchContext(backbone=model.preset, fingerprint=fingerprint_of(named),
                         theta0={n: p.detach().clone() for n, p in named}, train=no_data, score_fn=no_data,
                         flow_fn=flow_fn_for(model, named, lambda m: m(torch.ones(1, sizes[0], dtype=torch.float64))),
                         **kw)


def toy_data(n: int = 64, seq: int = 6, vocab: int = 20, seed: int = 1):
    """Token sequences and a regression target (a fixed function of the tokens)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, seq), generator=g)
    target = (tokens.float().mean(1) - vocab / 2) / vocab + torch.sin(tokens[:, 0].float())
    return tokens, target


def set_weights(named: list, weights: dict, masks: dict | None = None) -> None:
    with torch.no_grad():
        for n, p in named:
            w = weights[n]
            p.copy_(w if masks is None else w * masks[n])


def toy_context(model: ToyTransformer | None = None, *, steps: int = 5, lr: float = 0.05,
                rewind_step: int = 0, include=(), exclude=(), **kw) -> SearchContext:
    """A SearchContext whose `train` does `steps` real SGD steps on the toy regression with the
    masks enforced (calling `on_grads` before each step), whose `score_fn` returns gradients of the
    loss (for SNIP-like methods), whose `flow_fn` is SynFlow's data-free flow gradient and whose
    `calib_fn` collects the linear layers' input statistics over toy sequences (Wanda, SparseGPT)."""
    model = model or ToyTransformer()
    named = select_prunable(model, include, exclude)
    theta0 = {n: p.detach().clone() for n, p in named}
    others0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens, target = toy_data()

    def reset(start, masks):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(others0[n])
        set_weights(named, start, masks)

    def train(start, masks, on_grads=None) -> TrainResult:
        reset(start, masks)
        enforcer = MaskEnforcer(named, masks)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        rewind, losses = None, []
        for step in range(steps):
            if step == rewind_step and rewind_step > 0:
                rewind = {n: p.detach().clone() for n, p in named}
            loss = nn.functional.mse_loss(model(tokens), target)
            opt.zero_grad()
            loss.backward()
            enforcer.mask_grads()
            stop = on_grads is not None and on_grads({n: p.detach() for n, p in named},
                                                      {n: p.grad.detach() for n, p in named})
            opt.step()
            losses.append(loss.item())
            if stop:
                break
        return TrainResult({n: p.detach().clone() for n, p in named}, rewind,
                           {"loss_first": losses[0], "loss_last": losses[-1], "steps": len(losses),
                            **enforcer.audit()})

    def score_fn(weights, masks, batch=None) -> dict:  # full batch: every `batch` is the same data
        reset(weights, masks)
        model.zero_grad()
        nn.functional.mse_loss(model(tokens), target).backward()
        return {n: p.grad.detach().clone() for n, p in named}

    def calib_fn(weights, masks, names, *, samples, seed, hessian=False) -> dict:
        """Input statistics over `samples` toy sequences drawn with `seed` (a forward pass, no gradients)."""
        reset(weights, masks)
        pick = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))[:samples]
        model.eval()
        try:
            return collect_input_stats(model, names, lambda: (model(tokens[pick]), len(pick))[1], hessian)
        finally:
            model.train()

    kw.setdefault("sparsities", (0.3, 0.5, 0.7, 0.9))
    kw.setdefault("source", "toy")
    flow_fn = flow_fn_for(model, named, lambda m: m.forward_embeddings(
        torch.ones(1, 6, m.embed.embedding_dim, dtype=torch.float64)))
    return SearchContext(backbone=model.preset, fingerprint=fingerprint_of(named), theta0=theta0, train=train,
                         rewind_step=rewind_step, score_fn=score_fn, flow_fn=flow_fn, calib_fn=calib_fn,
                         meta={"include": list(include), "exclude": list(exclude), "train_steps": steps,
                               "model_numel": sum(p.numel() for p in model.parameters())}, **kw)
