"""The task registry: importing this package registers every task in `TASKS`.

`describe_tasks()` renders the registry as a table (the `ticketbench tasks` command);
`label_space(spec, train_examples)` builds a classify task's answer vocabulary.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from bench.tasks import gqa, nlvr2, pretrain, refcoco_plus, retrieval, snli_ve, vcr, vqa
from bench.tasks.base import TASKS, Example, TaskSpec, declare
from bench.tasks.metrics import METRICS, write_vqa_predictions

# Largest VQA answer vocabulary (the 3,129 answers of the UNITER / LXMERT / ViLT heads) and the
# minimum number of training questions an answer needs to enter it.
VQA_MAX_ANSWERS = 3129
VQA_MIN_COUNT = 2

# task name -> record converter (records, split, source) -> Examples; used by bench.data.hf.
RECORD_READERS: dict[str, Callable[..., list[Example]]] = {
    "vqa": vqa.from_records,
    "gqa": gqa.from_records,
    "nlvr2": nlvr2.from_records,
    "snli_ve": snli_ve.from_records,
    "refcoco_plus": refcoco_plus.from_records,
    "retrieval": retrieval.from_records,
    "vcr": vcr.from_records,
    **{name: pretrain.from_records for name in pretrain.OBJECTIVES},
}


def label_space(spec: TaskSpec, train_examples: list[Example]) -> list[str]:
    """The label list of a classify task.

    SNLI-VE: its 3 labels; NLVR2: ["False", "True"]; otherwise the training answers ordered by
    frequency (ties by name). For VQA an answer counts once per question in which it earns a
    target score, only answers of >= VQA_MIN_COUNT (2) questions are kept, at most
    VQA_MAX_ANSWERS (3129) of them; questions whose answers are all outside score 0.
    """
    if spec.head != "classify":
        raise ValueError(f"task '{spec.name}' has head '{spec.head}', not 'classify': it has no label space")
    if spec.name == "snli_ve":
        return list(snli_ve.LABELS)
    if spec.name == "nlvr2":
        return list(nlvr2.LABELS)
    counts = Counter(label for ex in train_examples for label in ex.target)
    ranked = sorted(counts, key=lambda a: (-counts[a], a))
    if spec.name == "vqa":
        ranked = [a for a in ranked if counts[a] >= VQA_MIN_COUNT][:VQA_MAX_ANSWERS]
    return ranked


def file_patterns(spec: TaskSpec) -> list[str]:
    """The training split's file names with the split name written as '<split>'."""
    train = spec.splits[0]
    return [f.replace(train, "<split>") for f in spec.files[train]]


def describe_tasks() -> str:
    """A plain-text table of every registered task: metric, head, splits, files, chance."""
    header = ("task", "headline metric", "head", "splits (train, eval, ...)", "files (under <data root>/)", "chance")
    rows = []
    for name in sorted(TASKS.names()):
        spec = TASKS.get(name)
        where = " + ".join(f"{spec.data_subdir}/{f}" for f in file_patterns(spec))
        rows.append((name, spec.headline, spec.head, ", ".join(spec.splits), where, f"{spec.chance:.1f}"))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


__all__ = [
    "TASKS", "METRICS", "RECORD_READERS", "Example", "TaskSpec", "declare",
    "describe_tasks", "label_space", "write_vqa_predictions", "VQA_MAX_ANSWERS", "VQA_MIN_COUNT",
]
