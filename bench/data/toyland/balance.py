"""Answer balancing: which of an image's candidate questions to ask, so that answers carry no prior.

A text-only model (or the per-question-type majority answer) can only exploit what the wording
says about the answer. Both balancers therefore pick, per image, a candidate whose answer is
currently *under-used* for its template, i.e. they choose the target answer first and then ask
the question of this image that has it; images that do not offer that answer get another template.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np


@dataclass(frozen=True)
class Cand:
    """A candidate example: `key` names its template (key[0] its question type), `label` its answer,
    `item` the payload."""

    key: tuple
    label: str
    item: Any


class _Picker:
    rng: np.random.Generator

    def pick(self, cands: list[Cand]) -> Cand | None:
        raise NotImplementedError

    def _choose(self, items: list):
        return items[int(self.rng.integers(len(items)))]

    def pick_many(self, cands: list[Cand], n: int, distinct=lambda c: c.item) -> list[Cand]:
        """Up to n picks with distinct payload keys (e.g. no question asked twice about one image)."""
        out, seen = [], set()
        for _ in range(n):
            c = self.pick([c for c in cands if repr(distinct(c)) not in seen])
            if c is None:
                break
            seen.add(repr(distinct(c)))
            out.append(c)
        return out


class TemplateBalancer(_Picker):
    """Balances answers within every template and every question type, and holds the mix of question
    types at `shares` (question type -> fraction; the question type of a candidate is key[0]).

    A pick takes the question type furthest behind its share among those for which this image offers
    an answer that is not over-used, both within its template and within its question type. Answers
    offered in fewer than `rare` of the images (a count of four, say) do not hold the others back:
    they are taken whenever an image offers them, and the common answers stay level meanwhile."""

    def __init__(self, rng: np.random.Generator, shares: dict[str, float], rare: float = 0.05):
        self.rng = rng
        total = sum(shares.values())
        self.shares = {k: v / total for k, v in shares.items()}
        self.rare = rare
        self.used: dict[Hashable, Counter] = {}  # template or question type -> answer -> picks
        self.offers: dict[Hashable, Counter] = {}  # template or question type -> answer -> offers
        self.offered: Counter = Counter()  # template or question type -> pick calls offering it
        self.type_picks: Counter = Counter()
        self.total = 0

    def _floor(self, scope: Hashable) -> int:
        """Uses of the least-used common answer of `scope` (a template or a question type)."""
        offers, used = self.offers[scope], self.used.setdefault(scope, Counter())
        return min(used[lab] for lab, n in offers.items() if n >= self.rare * self.offered[scope])

    def pick(self, cands: list[Cand]) -> Cand | None:
        if not cands:
            return None
        unknown = sorted({c.key[0] for c in cands} - set(self.shares))
        if unknown:
            raise ValueError(f"question types {unknown} have no share")
        pairs = sorted({(c.key, c.label) for c in cands}, key=repr)
        scoped = {(scope, lab) for k, lab in pairs for scope in (k, k[0])}
        self.offered.update({scope for scope, _ in scoped})
        for scope, lab in scoped:
            self.offers.setdefault(scope, Counter())[lab] += 1
        floor = {scope: self._floor(scope) for scope, _ in scoped}
        score = {(k, lab): self.used[k][lab] - floor[k] + self.used[k[0]][lab] - floor[k[0]] for k, lab in pairs}
        best: dict[str, int] = {}
        for (k, _), s in score.items():
            best[k[0]] = min(best.get(k[0], s), s)
        lowest = min(best.values())
        ok = sorted(t for t, s in best.items() if s <= max(lowest, 0))
        deficit = {t: self.shares[t] * (self.total + 1) - self.type_picks[t] for t in ok}
        top = max(deficit.values())
        qtype = self._choose([t for t in ok if deficit[t] == top])
        good = [(k, lab) for (k, lab), s in score.items() if k[0] == qtype and s == best[qtype]]
        key = self._choose(sorted({k for k, _ in good}, key=repr))
        label = self._choose(sorted(lab for k, lab in good if k == key))
        c = self._choose([c for c in cands if c.key == key and c.label == label])
        self.used[key][label] += 1
        self.used[qtype][label] += 1
        self.type_picks[qtype] += 1
        self.total += 1
        return c


class LabelBalancer(_Picker):
    """Jointly balances labels overall and within each template (SNLI-VE): the (template, label)
    pair with the lowest (uses of the label) + (its excess over the template's least-used label) wins."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.counts: Counter = Counter()
        self.label_counts: Counter = Counter()

    def pick(self, cands: list[Cand]) -> Cand | None:
        if not cands:
            return None
        all_labels = sorted({lab for _, lab in self.counts} | {c.label for c in cands})

        def score(key, label):
            floor = min(self.counts[key, lab] for lab in all_labels)
            return self.label_counts[label] + self.counts[key, label] - floor

        pairs = sorted({(c.key, c.label) for c in cands}, key=repr)
        scores = [score(k, lab) for k, lab in pairs]
        best = [p for p, sc in zip(pairs, scores) if sc == min(scores)]
        key, label = self._choose(best)
        c = self._choose([c for c in cands if c.key == key and c.label == label])
        self.counts[c.key, c.label] += 1
        self.label_counts[c.label] += 1
        return c
