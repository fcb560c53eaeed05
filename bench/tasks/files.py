"""Shared loader plumbing: where a task's files live, numbered JSON-lines, field checks, recipes.

Every loader reads canonical files into plain *records* (dicts shaped like the real file's rows)
and hands them to the task's `from_records`, so the file loaders and the Hugging Face `datasets`
path (bench/data/hf.py) share one record -> Example conversion and one set of error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import DataError
from bench.core.io import read_json
from bench.core.settings import TrainSettings
from bench.tasks.base import Example, TaskSpec


def task_dir(spec: TaskSpec, data_dir: str | Path) -> Path:
    """The directory holding `spec`'s files.

    `data_dir` is the data root (toyland's `world/` or a real data root); the files live in
    `data_dir/<spec.data_subdir>/` (or one of `spec.subdir_aliases`, e.g. RefCOCO+'s `refcoco+/` of
    the refer toolkit and toyland's `refcoco_plus/`). A `data_dir` that already is the task
    directory (it has no such subdirectory) is accepted as is, so users can point at either.
    """
    data_dir = Path(data_dir)
    if not spec.data_subdir:
        return data_dir
    for name in (spec.data_subdir, *spec.subdir_aliases):
        if (data_dir / name).is_dir():
            return data_dir / name
    return data_dir if data_dir.is_dir() else data_dir / spec.data_subdir


def split_paths(spec: TaskSpec, data_dir: str | Path, split: str) -> list[Path]:
    """Paths of the files of `split`; an unknown split or a missing file is a DataError. A name
    `a|b` accepts either file (the first present): a release's own name beside the layout's."""
    if split not in spec.files:
        raise DataError(f"task '{spec.name}': unknown split '{split}'; expected one of {', '.join(spec.files)}")
    root = task_dir(spec, data_dir)
    paths = []
    for name in spec.files[split]:
        options = [root / n for n in name.split("|")]
        found = next((p for p in options if p.is_file()), None)
        if found is None:
            raise DataError(f"{' or '.join(map(str, options))}: file not found (task '{spec.name}', split '{split}')")
        paths.append(found)
    return paths




def read_json_field(path: Path, key: str, kind: type = list) -> Any:
    """`read_json(path)[key]`, checked to be a `kind` (e.g. the `annotations` list of a COCO file)."""
    obj = read_json(path)
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: expected a JSON object with field '{key}', found {_kind(obj)}")
    if not isinstance(obj[key], kind):
        raise DataError(f"{path}: field '{key}': expected {kind.__name__}, found {_kind(obj[key])}")
    return obj[key]


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"object with fields {sorted(value)[:8]}"
    return type(value).__name__


def field(row: Any, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """`row[key]`, or a DataError '<where>: missing field ...' / '... expected <kind>, found ...'."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object, found {type(row).__name__}")
    if key not in row:
        raise DataError(f"{where}: missing field '{key}' (found fields: {', '.join(sorted(map(str, row))[:10])})")
    value = row[key]
    if kind is not None and not isinstance(value, kind):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{where}: field '{key}': expected {names}, found {type(value).__name__} {value!r:.40}")
    return value


def nonempty(examples: list[Example], source: str, split: str) -> list[Example]:
    """Refuse an empty split: training or evaluating on nothing is always a data mistake."""
    if not examples:
        raise DataError(f"{source}: split '{split}' has no examples (expected at least 1)")
    return examples


def recipes(**by_family: TrainSettings) -> dict[str, TrainSettings]:
    """{family: TrainSettings}: a task's recipe table; every task has a 'toy' recipe."""
    if "toy" not in by_family:
        raise ValueError("every task needs a 'toy' recipe")
    return dict(by_family)
