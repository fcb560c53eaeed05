"""The text world: a deterministic miniature language for the BERT study, written in the released formats.

A small world of animals with a colour and a home (`the red fox lives in paris .`). Each GLUE task asks
a question about it that a small transformer can learn from a few hundred examples, in the task's own
form — so the study's shape (dense above chance, sparse tickets, transfer) can be run on 2 CPU cores:

  sst2  a review with one sentiment word (good / awful ...), negated by "not" half the time: its polarity
  cola  a fact in its word order (acceptable) or with two words swapped (not)
  mrpc  a fact and a reordered paraphrase (equivalent) or one with a slot changed
  qqp   two questions about an animal: the same animal and colour (duplicate) or not
  stsb  two facts; similarity 5 × the share of their three slots that agree
  mnli  two facts; a claim about an animal of the premise (entailment / contradiction) or another (neutral)
  qnli  a question about an animal; does the sentence (a fact) answer it
  rte   a fact; does a claim about the animal's home follow
  wnli  "the A chased the B because it was hungry / scared"; who "it" is (the chaser is hungry)
  squad three facts; "what color is the fox ?" / "where does the fox live ?": the word in the context
  corpus documents of 3-6 facts, one per blank-line-separated block (MLM)

Written as GLUE distributes it (`<Task>/{train,dev}.tsv`, the folders of GLUE's `glue_data/`, MNLI's dev_matched / dev_mismatched,
CoLA without header, MRPC with a byte-order mark), SQuAD v1.1 JSON (`squad/{train,dev}-v1.1.json`) and
`corpus/{train,dev}.txt`, plus `vocab.txt` and `MANIFEST.json` (counts, and each task's chance level:
the majority class on dev; 0 for correlations and Matthews; for SQuAD the score of answering the first
word of the asked type in the context).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.core.errors import ConfigError
from bench.core.io import atomic_write_json, atomic_write_text

VERSION = 2  # 2: SST-2 negates half its sentiment words (version 1's one-word polarity saturated: 100 % for every ticket)

NOUNS = ("fox", "dog", "cat", "bird", "horse", "lion", "bear", "wolf", "fish", "frog", "owl", "deer")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "gray")
PLACES = ("paris", "rome", "tokyo", "cairo", "lima", "oslo", "delhi", "quito")
POSITIVE = ("good", "great", "fine", "lovely", "nice")
NEGATIVE = ("bad", "awful", "poor", "dull", "ugly")
FILLER = ("small", "big", "old", "young", "quiet", "loud")
FUNCTION = ("the", "lives", "in", "is", "and", "was", "where", "does", "live", "what", "color", "place", "home",
            "to", "chased", "because", "it", "hungry", "scared", "film", "about", "a", "story", "of", "not", ".", "?")


@dataclass(frozen=True)
class Scale:
    train: int  # examples per GLUE / SQuAD train split
    dev: int
    small_train: int  # RTE, MRPC, WNLI: the small GLUE tasks
    corpus_train: int  # documents
    corpus_dev: int


SCALES = {"smoke": Scale(64, 32, 48, 64, 16), "default": Scale(1200, 300, 500, 2000, 200),
          "large": Scale(5000, 1000, 2000, 10000, 500)}


def _fact(c: str, n: str, p: str) -> str:
    return f"the {c} {n} lives in {p} ."


def _slots(r: random.Random) -> tuple[str, str, str]:
    return r.choice(COLORS), r.choice(NOUNS), r.choice(PLACES)


def _other(r: random.Random, pool: tuple, not_this: str) -> str:
    return r.choice([x for x in pool if x != not_this])


# ---- one generator per task: (rows of text fields, label) -------------------------------------------
def sst2(r):
    pos, negated = r.random() < 0.5, r.random() < 0.5
    word = r.choice(POSITIVE if pos else NEGATIVE)
    return (f"a {r.choice(FILLER)} film about the {r.choice(NOUNS)} , {'not ' if negated else ''}{word} story .",), \
        "1" if pos != negated else "0"


def cola(r):
    words = _fact(*_slots(r)).split()
    if r.random() < 0.5:
        return (" ".join(words),), "1"
    i, j = r.sample(range(len(words) - 1), 2)  # the final "." stays
    while words[i] == words[j]:
        i, j = r.sample(range(len(words) - 1), 2)
    words[i], words[j] = words[j], words[i]
    return (" ".join(words),), "0"


def mrpc(r):
    c, n, p = _slots(r)
    same = r.random() < 0.6
    c2, n2, p2 = c, n, p
    if not same:  # one slot changed
        k = r.randrange(3)
        c2, n2, p2 = [(_other(r, COLORS, c), n, p), (c, _other(r, NOUNS, n), p), (c, n, _other(r, PLACES, p))][k]
    return (_fact(c, n, p), f"in {p2} lives the {c2} {n2} ."), "1" if same else "0"


def qqp(r):
    c, n, _ = _slots(r)
    dup = r.random() < 0.4
    c2, n2 = (c, n) if dup else ((_other(r, COLORS, c), n) if r.random() < 0.5 else (c, _other(r, NOUNS, n)))
    return (f"where does the {c} {n} live ?", f"what place is home to the {c2} {n2} ?"), "1" if dup else "0"


def stsb(r):
    a = _slots(r)
    b = tuple(x if r.random() < 0.5 else _other(r, pool, x) for x, pool in zip(a, (COLORS, NOUNS, PLACES)))
    score = 5.0 * sum(x == y for x, y in zip(a, b)) / 3
    return (_fact(*a), _fact(*b)), f"{score:.3f}"


def mnli(r):
    (c1, n1, p1), (c2, n2, p2) = _slots(r), _slots(r)
    while n2 == n1:
        n2 = r.choice(NOUNS)
    premise = f"the {c1} {n1} lives in {p1} and the {c2} {n2} lives in {p2} ."
    label = r.choice(("entailment", "neutral", "contradiction"))
    n, c = (n1, c1) if r.random() < 0.5 else (n2, c2)
    if label == "entailment":
        hyp = f"the {n} is {c} ."
    elif label == "contradiction":
        hyp = f"the {n} is {_other(r, COLORS, c)} ."
    else:
        hyp = f"the {r.choice([x for x in NOUNS if x not in (n1, n2)])} is {r.choice(COLORS)} ."
    return (premise, hyp), label


def qnli(r):
    c, n, p = _slots(r)
    yes = r.random() < 0.5
    asked = n if yes else _other(r, NOUNS, n)
    return (f"where does the {asked} live ?", _fact(c, n, p)), "entailment" if yes else "not_entailment"


def rte(r):
    c, n, p = _slots(r)
    yes = r.random() < 0.5
    return (_fact(c, n, p), f"the {n} lives in {p if yes else _other(r, PLACES, p)} ."), \
        "entailment" if yes else "not_entailment"


def wnli(r):
    a, b = r.sample(NOUNS, 2)
    why = r.choice(("hungry", "scared"))  # the chaser is hungry, the chased is scared
    who = r.choice((a, b))
    yes = (who == a) == (why == "hungry")
    return (f"the {a} chased the {b} because it was {why} .", f"the {who} was {why} ."), "1" if yes else "0"


GLUE = {"sst2": sst2, "cola": cola, "mrpc": mrpc, "qqp": qqp, "stsb": stsb, "mnli": mnli, "qnli": qnli,
        "rte": rte, "wnli": wnli}
SMALL = ("rte", "mrpc", "wnli")
# GLUE's folder names and files: header (None: CoLA has none), the columns of the texts and of the label
LAYOUT = {
    "cola": ("CoLA", None),
    "sst2": ("SST-2", ("sentence", "label")),
    "mrpc": ("MRPC", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")),
    "stsb": ("STS-B", ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                       "sentence2", "score")),
    "qqp": ("QQP", ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")),
    "mnli": ("MNLI", ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                      "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label")),
    "qnli": ("QNLI", ("index", "question", "sentence", "label")),
    "rte": ("RTE", ("index", "sentence1", "sentence2", "label")),
    "wnli": ("WNLI", ("index", "sentence1", "sentence2", "label")),
}


def _row(task: str, i: int, texts: tuple, label: str) -> tuple:
    """A TSV row in the task's released column layout."""
    if task == "cola":
        return ("tw", label, "" if label == "1" else "*", texts[0])
    if task == "sst2":
        return (texts[0], label)
    if task == "mrpc":
        return (label, str(2 * i), str(2 * i + 1), *texts)
    if task == "stsb":
        return (str(i), "main-captions", "textworld", "2026", f"{i:04d}", "none", "none", *texts, label)
    if task == "qqp":
        return (str(i), str(2 * i), str(2 * i + 1), *texts, label)
    if task == "mnli":
        return (str(i), str(i), f"{i}{label[0]}", "textworld", "( ... )", "( ... )", "(ROOT ...)", "(ROOT ...)",
                *texts, label, label)
    return (str(i), *texts, label)


def _tsv(path: Path, header, rows, bom: bool = False) -> None:
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, ("\ufeff" if bom else "") + "\n".join(lines) + "\n")


def _squad_article(r: random.Random, k: int, questions: int) -> dict:
    nouns = r.sample(NOUNS, 3)
    facts = [(r.choice(COLORS), n, r.choice(PLACES)) for n in nouns]
    context = " ".join(_fact(*f) for f in facts)
    qas = []
    for q in range(questions):
        c, n, p = r.choice(facts)
        color = r.random() < 0.5
        question, answer = (f"what color is the {n} ?", c) if color else (f"where does the {n} live ?", p)
        start = context.index(_fact(c, n, p)) + (len("the ") if color else len(f"the {c} {n} lives in "))
        qas.append({"id": f"tw{k:05d}q{q}", "question": question,
                    "answers": [{"text": answer, "answer_start": start}] * 3})
    return {"title": f"textworld_{k}", "paragraphs": [{"context": context, "qas": qas}]}


def _squad_baseline(article: dict) -> float:
    """EM of answering the first word of the asked type (colour or place) in the context."""
    hits = total = 0
    for p in article["paragraphs"]:
        words = p["context"].split()
        for qa in p["qas"]:
            pool = COLORS if qa["question"].startswith("what color") else PLACES
            guess = next(w for w in words if w in pool)
            hits += guess == qa["answers"][0]["text"]
            total += 1
    return hits / total


def _document(r: random.Random) -> str:
    nouns = r.sample(NOUNS, r.randint(3, 6))
    facts = [(r.choice(COLORS), n, r.choice(PLACES)) for n in nouns]
    lines = [_fact(*f) for f in facts]
    lines += [f"the {n} is {c} ." for c, n, _ in r.sample(facts, 2)]  # repeated facts: MLM can recall them
    return "\n".join(lines)


def generate_text_world(out_dir: str | Path, seed: int = 0, scale: str = "default") -> dict:
    """Write the text world to `out_dir` (see the module docstring); returns its manifest."""
    if scale not in SCALES:
        raise ConfigError(f"world.scale: unknown scale '{scale}'; expected one of {', '.join(SCALES)}")
    s, out = SCALES[scale], Path(out_dir)
    counts: dict = {}
    chance: dict = {}
    vocab: set = set(NOUNS + COLORS + PLACES + POSITIVE + NEGATIVE + FILLER + FUNCTION)
    for task, make in GLUE.items():
        r = random.Random(f"{seed}-{task}")
        folder, header = LAYOUT[task]
        n_train = s.small_train if task in SMALL else s.train
        devs = ("dev_matched", "dev_mismatched") if task == "mnli" else ("dev",)
        for split, n in (("train", n_train), *((d, s.dev) for d in devs)):
            rows = [make(r) for _ in range(n)]
            _tsv(out / folder / f"{split}.tsv", header,
                 [_row(task, i, texts, label) for i, (texts, label) in enumerate(rows)], bom=task == "mrpc")
            counts.setdefault(task, {})[split] = n
            if split == devs[0]:
                labels = Counter(label for _, label in rows)
                chance[task] = ({"pearson": 0.0, "spearman": 0.0} if task == "stsb" else
                                {"matthews": 0.0} if task == "cola" else
                                {"accuracy": round(100.0 * max(labels.values()) / n, 2),
                                 **({"f1": 0.0} if task in ("mrpc", "qqp") else {})})
    r = random.Random(f"{seed}-squad")
    for split, n in (("train", s.train), ("dev", s.dev)):
        articles = [_squad_article(r, k, 3) for k in range(max(1, n // 3))]
        (out / "squad").mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "squad" / f"{split}-v1.1.json", json.dumps({"data": articles, "version": "1.1"}))
        counts.setdefault("squad", {})[split] = 3 * len(articles)
        if split == "dev":
            em = 100.0 * sum(_squad_baseline(a) for a in articles) / len(articles)
            chance["squad"] = {"exact_match": round(em, 2), "f1": round(em, 2)}
    r = random.Random(f"{seed}-corpus")
    for split, n in (("train", s.corpus_train), ("dev", s.corpus_dev)):
        (out / "corpus").mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "corpus" / f"{split}.txt", "\n\n".join(_document(r) for _ in range(n)) + "\n")
        counts.setdefault("corpus", {})[split] = n
    atomic_write_text(out / "vocab.txt", "\n".join(sorted(vocab)) + "\n")
    manifest = {"kind": "textworld", "version": VERSION, "seed": seed, "scale": scale, "scale_params": asdict(s),
                "counts": counts, "chance": chance,
                "chance_how": "majority class of dev (accuracy); 0 for F1, Matthews and correlations; SQuAD: the "
                              "first word of the asked type (colour or place) in the context"}
    atomic_write_json(out / "MANIFEST.json", manifest)
    return manifest
