"""A text backbone (bench/backbones/bert.py) plus the head of a text task kind, and MLM.

Heads (named `head.`, so `train(head_prefixes=("head.",))` gives them `head_lr_mult`):
  classify  dropout + Linear on the pooled [CLS] (transformers' BertForSequenceClassification), cross-entropy
  regress   the same with one output and mean squared error (STS-B, as BertForSequenceClassification with 1 label)
  span      Linear(H, 2) on every token: start and end logits (BertForQuestionAnswering), the mean of the
            start and end cross-entropies
Sentence pairs are encoded as [CLS] a [SEP] b [SEP] with segment ids 0 / 1, truncated longest-first to
the backbone's `max_text_len` (run_glue's `max_seq_length`).

SQuAD follows the reference fine-tuning code (Google's run_squad.py, transformers' run_squad): the question
is cut to `max_query` tokens, the context is tokenised once and covered by windows of the tokens that
fit (`max_len` − question − 3) starting every `doc_stride` tokens until one reaches its end; a training
window whose span does not hold the whole answer targets [CLS] (position 0). Prediction takes, per
window, the `n_best` highest start and end logits, keeps pairs inside the context with end ≥ start,
at most `max_answer` tokens long and whose start token has its maximal context in that window, and
answers with the context characters of the best start + end score over all windows.

`MLMModel` masks 15 % of the non-special tokens of each text (80 % [MASK], 10 % a random token, 10 %
kept: BERT's rule) and predicts them with BERT's MLM head (dense, GELU, LayerNorm, the decoder tied to
the word embeddings), started from the checkpoint's pre-trained head when it has one
(`backbone.pretrained_heads`), else fresh (`fresh_head` True: the report must say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.bert import BertBackbone
from bench.backbones.task_model import evaluating
from bench.core.device import place
from bench.core.errors import ConfigError, DataError

TEXT_HEADS = ("classify", "regress", "span")


def encode_pairs(tokenizer: Any, texts: Sequence[Sequence[str]], max_len: int) -> dict[str, torch.Tensor]:
    """input_ids, token_type_ids, attention_mask of one or two texts per row, truncated longest-first."""
    firsts = [t[0] for t in texts]
    seconds = [t[1] for t in texts] if texts and len(texts[0]) > 1 else None
    enc = tokenizer(firsts, seconds, truncation="longest_first" if seconds else True, max_length=max_len,
                    padding="longest", return_tensors="pt", return_token_type_ids=True)
    return {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}


# ---------------------------------------------------------------------------------------------- SQuAD
@dataclass
class Window:
    """One document-stride window of a question and its context."""

    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # context characters of each token; None for question / specials
    max_context: list[bool]  # whether each token has its maximal context in this window
    start: int = 0  # training target token positions (0: [CLS], the answer is not wholly inside)
    end: int = 0


def squad_windows(tokenizer: Any, question: str, context: str, max_len: int = 384, doc_stride: int = 128,
                  max_query: int = 64, answer: tuple[int, int] | None = None) -> list[Window]:
    """The reference code's windows of (question, context); `answer` (first char, char after the last)
    sets each window's start / end targets."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    q = tokenizer(question, add_special_tokens=False)["input_ids"][:max_query]
    ctx = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    doc, doc_offsets = ctx["input_ids"], [tuple(o) for o in ctx["offset_mapping"]]
    room = max_len - len(q) - 3
    if room < 1:
        raise ConfigError(f"SQuAD windows: max_len {max_len} leaves no room for the context after a "
                          f"{len(q)}-token question")
    spans, start = [], 0
    while True:
        length = min(room, len(doc) - start)
        spans.append((start, length))
        if start + length >= len(doc):
            break
        start += min(length, doc_stride)
    tok_start = tok_end = None
    if answer is not None:
        inside = [i for i, (a, b) in enumerate(doc_offsets) if b > answer[0] and a < answer[1]]
        if inside:
            tok_start, tok_end = inside[0], inside[-1]
    windows = []
    for s, n in spans:
        ids = [cls, *q, sep, *doc[s:s + n], sep]
        types = [0] * (len(q) + 2) + [1] * (n + 1)
        offsets: list = [None] * (len(q) + 2) + doc_offsets[s:s + n] + [None]
        best = [_max_context(spans, s + i) == (s, n) for i in range(n)]
        w = Window(ids, types, offsets, [False] * (len(q) + 2) + best + [False])
        if tok_start is not None and s <= tok_start and tok_end < s + n:
            w.start, w.end = tok_start - s + len(q) + 2, tok_end - s + len(q) + 2
        windows.append(w)
    return windows


def _max_context(spans: list[tuple[int, int]], position: int) -> tuple[int, int]:
    """The window where `position` has the most context: max of min(left, right) + 0.01 × length."""
    best, score = spans[0], None
    for s, n in spans:
        if not s <= position < s + n:
            continue
        value = min(position - s, s + n - 1 - position) + 0.01 * n
        if score is None or value > score:
            best, score = (s, n), value
    return best


def decode_span(windows: Sequence[Window], start_logits: Sequence[Sequence[float]],
                end_logits: Sequence[Sequence[float]], context: str, n_best: int = 20, max_answer: int = 30) -> str:
    """The answer text of the best valid (start, end) over all windows (the reference n-best rule); '' if none."""
    best, best_score = "", None
    for w, sl, el in zip(windows, start_logits, end_logits):
        sl, el = list(sl)[:len(w.input_ids)], list(el)[:len(w.input_ids)]
        starts = sorted(range(len(sl)), key=lambda i: -sl[i])[:n_best]
        ends = sorted(range(len(el)), key=lambda i: -el[i])[:n_best]
        for s in starts:
            for e in ends:
                if w.offsets[s] is None or w.offsets[e] is None or not w.max_context[s]:
                    continue
                if e < s or e - s + 1 > max_answer:
                    continue
                score = sl[s] + el[e]
                if best_score is None or score > best_score:
                    best, best_score = context[w.offsets[s][0]:w.offsets[e][1]], score
    return best


def collate_windows(windows: Sequence[Window], pad: int) -> dict[str, torch.Tensor]:
    length = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), length), pad, dtype=torch.long)
    types = torch.zeros(len(windows), length, dtype=torch.long)
    mask = torch.zeros(len(windows), length, dtype=torch.long)
    for i, w in enumerate(windows):
        n = len(w.input_ids)
        ids[i, :n] = torch.tensor(w.input_ids)
        types[i, :n] = torch.tensor(w.token_type_ids)
        mask[i, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------- tasks
class TextTaskModel(nn.Module):
    """backbone + the head of `spec.head` (classify / regress / span); `labels` for classify.
    SQuAD's window settings: `doc_stride`, `max_query`, `n_best`, `max_answer` (the reference's defaults)."""

    def __init__(self, backbone: BertBackbone, spec: Any, labels: Sequence[str] | None = None,
                 doc_stride: int = 128, max_query: int = 64, n_best: int = 20, max_answer: int = 30):
        super().__init__()
        if spec.head not in TEXT_HEADS:
            raise ConfigError(f"task '{spec.name}': head '{spec.head}' is not a text head ({', '.join(TEXT_HEADS)})")
        if backbone.image_input != "none":
            raise ConfigError(f"task '{spec.name}' is a text task; backbone '{backbone.preset}' is a vision-and-language one")
        self.backbone, self.spec, self.kind = backbone, spec, spec.head
        self.doc_stride, self.max_query, self.n_best, self.max_answer = doc_stride, max_query, n_best, max_answer
        h = backbone.hidden_size
        dropout = float(backbone.config.get("dropout", 0.1))
        if self.kind == "classify":
            if not labels:
                raise ConfigError(f"task '{spec.name}': a classify head needs its label list")
            self.labels = list(labels)
            self.label_index = {lab: i for i, lab in enumerate(self.labels)}
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(h, len(self.labels)))
        elif self.kind == "regress":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(h, 1))
        else:
            self.head = nn.Linear(h, 2)
        for m in self.head.modules():  # BERT's head initialisation
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        place(self.head, backbone.device)

    def _windows(self, ex: Any, targets: bool) -> list[Window]:
        question, context = ex.texts
        answer = None
        if targets:
            start = int(ex.target["start"])
            answer = (start, start + len(ex.target["text"]))
        return squad_windows(self.backbone.tokenizer, question, context, self.backbone.max_text_len,
                             self.doc_stride, self.max_query, answer)

    def _inputs(self, enc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dev = self.backbone.device
        return {k: v.to(dev) for k, v in enc.items()}

    def _pooled_out(self, examples: Sequence[Any]) -> torch.Tensor:
        enc = self._inputs(encode_pairs(self.backbone.tokenizer, [ex.texts for ex in examples], self.backbone.max_text_len))
        return self.head(self.backbone.encode_text(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).pooled)

    def _span_logits(self, windows: Sequence[Window]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self._inputs(collate_windows(windows, self.backbone.tokenizer.pad_token_id or 0))
        seq = self.backbone.encode_text(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).sequence
        logits = self.head(seq).float()
        pad = enc["attention_mask"] == 0
        return logits[..., 0].masked_fill(pad, -1e4), logits[..., 1].masked_fill(pad, -1e4)

    def loss(self, examples: Sequence[Any]) -> torch.Tensor:
        if self.kind == "classify":
            missing = [ex.uid for ex in examples if max(ex.target, key=ex.target.get) not in self.label_index]
            if missing:
                raise DataError(f"example {missing[0]}: label not in the task's label list {self.labels}")
            target = torch.tensor([self.label_index[max(ex.target, key=ex.target.get)] for ex in examples],
                                  device=self.backbone.device)
            return F.cross_entropy(self._pooled_out(examples).float(), target)
        if self.kind == "regress":
            target = torch.tensor([float(ex.target) for ex in examples], device=self.backbone.device)
            return F.mse_loss(self._pooled_out(examples).float().squeeze(-1), target)
        windows = [w for ex in examples for w in self._windows(ex, targets=True)]
        start, end = self._span_logits(windows)
        dev = start.device
        ts = torch.tensor([w.start for w in windows], device=dev)
        te = torch.tensor([w.end for w in windows], device=dev)
        return (F.cross_entropy(start, ts) + F.cross_entropy(end, te)) / 2

    # The runner's interface of a task model (TaskModel's): text batches are lists of Examples, tokenised in
    # the forward (no image store, no host half), so `train` and `evaluate_task` get plain callables.
    def batch_loss(self, store: Any = None):
        return self.loss

    def batcher(self, store: Any = None, targets: bool = True):
        return None

    def predict_batch(self, examples: Sequence[Any]) -> dict[str, Any]:
        return self.predict(examples)

    def predict(self, examples: Sequence[Any]) -> dict[str, Any]:
        """uid -> label (classify), float score (regress) or answer text (span)."""
        with evaluating(self):
            if self.kind == "classify":
                best = self._pooled_out(examples).argmax(-1).tolist()
                return {ex.uid: self.labels[i] for ex, i in zip(examples, best)}
            if self.kind == "regress":
                return {ex.uid: float(v) for ex, v in zip(examples, self._pooled_out(examples).float().squeeze(-1).tolist())}
            out = {}
            for ex in examples:
                windows = self._windows(ex, targets=False)
                start, end = self._span_logits(windows)
                out[ex.uid] = decode_span(windows, start.tolist(), end.tolist(), ex.texts[1], self.n_best, self.max_answer)
            return out


# ---------------------------------------------------------------------------------------------- MLM
class MLMHead(nn.Module):
    """BERT's MLM head: dense, GELU, LayerNorm, then the decoder tied to the word embeddings, plus a bias."""

    def __init__(self, hidden: int, vocab: int, eps: float = 1e-12):
        super().__init__()
        self.transform = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.transform(x))), decoder, self.bias)


class MLMModel(nn.Module):
    """Masked language modelling over texts (one example's text is one sequence, cut at `max_text_len`)."""

    def __init__(self, backbone: BertBackbone, mask_prob: float = 0.15):
        super().__init__()
        self.backbone, self.mask_prob = backbone, mask_prob
        h, vocab = backbone.hidden_size, backbone.word_embeddings().weight.shape[0]
        self.head = MLMHead(h, vocab, float(backbone.config.get("layer_norm_eps", 1e-12)))
        nn.init.normal_(self.head.transform.weight, std=0.02)
        nn.init.zeros_(self.head.transform.bias)
        self.fresh_head = not backbone.pretrained_heads
        if not self.fresh_head:
            state = dict(backbone.pretrained_heads)
            own = self.head.state_dict()
            bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
            if bad:
                raise ConfigError(f"{backbone.preset}: the checkpoint's MLM head does not fit ({', '.join(bad[:3])})")
            self.head.load_state_dict(state)
        place(self.head, backbone.device)

    def head_state(self) -> dict[str, torch.Tensor]:
        """The MLM head's weights as `backbone.pretrained_heads` holds them, detached on the CPU."""
        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in self.head.state_dict().items()}

    def _masked(self, examples: Sequence[Any], generator: torch.Generator | None):
        tok = self.backbone.tokenizer
        enc = encode_pairs(tok, [ex.texts[:1] for ex in examples], self.backbone.max_text_len)
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        special = torch.zeros_like(mask)
        for sid in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id):
            special |= ids == sid
        candidates = mask & ~special
        chosen = (torch.rand(ids.shape, generator=generator) < self.mask_prob) & candidates
        # at least one masked token a sequence that has any (a short text would otherwise teach nothing)
        for i in range(len(ids)):
            if not chosen[i].any() and candidates[i].any():
                chosen[i, candidates[i].nonzero()[0, 0]] = True
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=generator)
        inputs = ids.clone()
        inputs[chosen & (roll < 0.8)] = tok.mask_token_id
        randomise = chosen & (roll >= 0.8) & (roll < 0.9)
        vocab = self.backbone.word_embeddings().weight.shape[0]
        inputs[randomise] = torch.randint(vocab, ids.shape, generator=generator)[randomise]
        return inputs, enc["token_type_ids"], mask, labels

    def _logits(self, inputs, types, mask) -> torch.Tensor:
        dev = self.backbone.device
        seq = self.backbone.encode_text(inputs.to(dev), mask.to(dev), types.to(dev)).sequence
        return self.head(seq, self.backbone.word_embeddings().weight)

    def batch_loss(self, store: Any = None, objectives: Any = None, mask_prob: float | None = None):
        """The runner's interface of a pre-training model (PretrainModel's): MLM is the one objective."""
        if mask_prob is not None:
            self.mask_prob = float(mask_prob)
        return self.loss

    def batcher(self, store: Any = None, targets: bool = True):
        return None

    def predict_batch(self, examples: Sequence[Any]) -> dict[str, tuple[int, int]]:
        return self.predict(examples)

    def loss(self, examples: Sequence[Any]) -> torch.Tensor:
        inputs, types, mask, labels = self._masked(examples, None)
        logits = self._logits(inputs, types, mask).float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.to(logits.device).view(-1), ignore_index=-100)

    def predict(self, examples: Sequence[Any], seed: int = 0) -> dict[str, tuple[int, int]]:
        """uid -> (masked tokens predicted right, masked tokens): the `pretrain` metric's input. The
        masks are drawn from `seed`, so every ticket is scored on the same masked tokens."""
        g = torch.Generator().manual_seed(seed)
        with evaluating(self):
            inputs, types, mask, labels = self._masked(examples, g)
            pred = self._logits(inputs, types, mask).argmax(-1).cpu()
        scored = labels != -100
        return {ex.uid: (int(((pred[i] == labels[i]) & scored[i]).sum()), int(scored[i].sum()))
                for i, ex in enumerate(examples)}
