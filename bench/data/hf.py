"""Read a task's examples through Hugging Face `datasets` (local json / jsonl / parquet, or a hub id).

Rows must look like the records the task's file loader builds (see each task's `from_records`):
  vqa        {question_id, image_id, question, answers: 10 x {answer} or str}
  gqa        {question_id, imageId, question, answer}
  nlvr2      {identifier, sentence, label}          snli_ve  {Flikr30kID, sentence2, gold_label}
  retrieval  {filename, sentences: [{raw}], [split]}
  refcoco_plus {ref_id, ann_id, image_id, sentences: [{sent}], bbox (pixel xywh), width, height, [split]}
  vcr        its jsonl rows (metadata boxes are not read)      mlm/itm/mrm {image_id, caption}
A row without a `split` field belongs to the requested split (a file per split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.core.errors import DataError
from bench.tasks import RECORD_READERS, TASKS
from bench.tasks.base import Example, TaskSpec

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _builder(paths: list[Path]) -> str:
    kinds = {_BUILDERS.get(p.suffix.lower()) for p in paths}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"{paths[0]}: expected .json, .jsonl or .parquet files of one kind, found {sorted(p.suffix for p in paths)}")
    return kinds.pop()


def load_rows_hf(source: str | Path | Sequence[str | Path], split: str, field: str | None = None,
                 cache_dir: str | None = None) -> list[dict]:
    """Rows of `split` from local data files (a path, a list of paths or a directory) or, when the
    source is no local path, from the hub dataset of that id (needs network)."""
    import datasets

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    paths = [Path(s) for s in sources]
    if all(p.exists() for p in paths):
        files = [f for p in paths for f in (sorted(q for q in p.iterdir() if q.suffix in _BUILDERS) if p.is_dir() else [p])]
        if not files:
            raise DataError(f"{paths[0]}: no .json, .jsonl or .parquet files found")
        kwargs: dict[str, Any] = {"field": field} if field else {}
        try:
            ds = datasets.load_dataset(_builder(files), data_files={split: [str(f) for f in files]}, split=split,
                                       cache_dir=cache_dir, **kwargs)
        except Exception as e:  # arrow / json errors of many kinds
            raise DataError(f"{files[0]}: datasets could not read it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    else:
        if len(sources) != 1 or Path(str(sources[0])).suffix in _BUILDERS:
            raise DataError(f"{paths[0]}: file not found")
        try:
            ds = datasets.load_dataset(str(sources[0]), split=split, cache_dir=cache_dir)
        except Exception as e:
            raise DataError(f"hub dataset '{sources[0]}' split '{split}': could not load ({type(e).__name__})") from None
    return ds.to_list()


def load_examples_hf(spec: TaskSpec | str, source: str | Path | Sequence[str | Path], split: str,
                     field: str | None = None, cache_dir: str | None = None) -> list[Example]:
    """The task's Examples of `split`, read through `datasets` (see the module docstring for row
    shapes; `field` selects a top-level list of a JSON file, e.g. 'images' for Karpathy JSON)."""
    spec = TASKS.get(spec) if isinstance(spec, str) else spec
    rows = load_rows_hf(source, split, field=field, cache_dir=cache_dir)
    label = str(source if isinstance(source, (str, Path)) else list(source)[0])
    # Arrow unifies the schema of all rows, filling absent fields with None: drop those again.
    records = [(f"{label} row {i}", {"split": split, **{k: v for k, v in row.items() if v is not None}})
               for i, row in enumerate(rows)]
    return RECORD_READERS[spec.name](records, split, label)
