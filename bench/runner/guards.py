"""Checks before work, for the whole command at once: every split that any of the requested stages will
read is loaded (and so validated) right after the world exists and before pre-training, so a missing
`gqa/` folder or a malformed evaluation split fails in one line in seconds — not after pre-training or
an IMP search. (Each stage also checks its own inputs, `bench.runner.stages.check_inputs`; the reads are
cached, so checking twice costs nothing.)"""

from __future__ import annotations

from typing import Iterable

from bench.runner.stages import check_inputs

TRAINING_STAGES = ("pretrain", "find", "matrix")


def objectives_read(plan, stages: Iterable[str]) -> list[str]:
    """What the find and matrix stages will train and evaluate on: the searches' objectives (tasks or
    the pre-training mix) and the target tasks, in first-use order."""
    stages = set(stages)
    objectives: list[str] = []
    if "find" in stages:
        objectives += [s.source.objective for s in plan.searches if s.trains]
    if "matrix" in stages:
        objectives += list(plan.config.matrix.tasks)
    return list(dict.fromkeys(objectives))


def check_task_data(plan, study, stages: Iterable[str]) -> None:
    """Read every split the requested stages will read (one-line DataErrors name file, line, field)."""
    stages = list(stages)
    if set(stages) & set(TRAINING_STAGES):
        check_inputs(study, objectives_read(plan, stages))
