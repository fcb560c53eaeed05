"""generate_world: the whole toyland world, written into a partial directory and renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path

import numpy as np

from bench.core.errors import DataError
from bench.core.io import MAX_STORE_BYTES, read_json
from bench.core.safe_pickle import safe_load
from bench.core.validate import check_world_manifest
from bench.data.toyland import captions, gqa, nlvr2, refcoco_plus, snli_ve, vcr, vqa
from bench.data.toyland.features import FEAT_DIM, FEATURE_NAMES
from bench.data.toyland.scene import IMAGE_SIZE, sample_scene
from bench.data.toyland.writer import WorldWriter
from bench.tasks.metrics import vqa_score

VERSION = 2  # 2: standardised region features (features.calibration)


@dataclass(frozen=True)
class Scale:
    """How much of the world to write."""

    shared_train: int  # images behind VQA/GQA/VCR train, Flickr30k train and the caption corpus
    shared_eval: int  # images behind VQA val2014, GQA testdev and VCR val
    per_image: int  # questions per image (VQA, GQA, VCR) and hypotheses per image (SNLI-VE)
    retrieval_eval: int  # Flickr30k val images (test: as many, half of them mirrored twins)
    ve_images: tuple[int, int, int]  # SNLI-VE train, dev, test images
    ref_images: tuple[int, int, int, int]  # RefCOCO+ train, val, testA, testB images
    refs_per_image: int
    nlvr2_sets: tuple[int, int]  # NLVR2 train, dev sets (8 statements and 8 images each)
    caption_val: int  # fresh images for the caption corpus' val split


SCALES = {
    "smoke": Scale(120, 40, 2, 20, (80, 24, 24), (60, 20, 10, 10), 2, (20, 6), 20),
    "default": Scale(1000, 150, 2, 50, (700, 100, 100), (500, 80, 40, 40), 3, (250, 40), 150),
    # The default study's world: the default's training pools, dev splits of thousands (evaluation is
    # forward-only: cheap beside training, and a 300-example dev split alone adds 1.4-2.5 points of noise).
    "study": Scale(1000, 1000, 2, 50, (700, 700, 100), (500, 700, 40, 40), 3, (250, 250), 150),
    "large": Scale(8000, 1000, 3, 400, (4000, 500, 500), (3000, 400, 200, 200), 3, (1500, 200), 1000),
}


def _retrieval_chance(n_images: int, n_texts: int, per_image: int = 5) -> float:
    """Expected r_mean (%) of a random ranking: IR R@k = k/N; TR R@k = P(one of 5 captions in top k)."""
    ks = (1, 5, 10)
    ir = [min(k / n_images, 1.0) for k in ks]
    tr = [1 - comb(n_texts - per_image, k) / comb(n_texts, k) for k in ks]
    return 100 * (sum(ir) + sum(tr)) / 6


def _prior_accuracy(train: list[tuple[str, str]], test: list[tuple[str, str]], fixed: dict | None = None) -> float:
    """Accuracy (%) of answering each test item with the train majority answer of its template;
    `fixed` gives the chance of templates whose wording names the candidates (GQA 'choose': 1/2)."""
    fixed = fixed or {}
    by_key: dict[str, dict[str, int]] = {}
    for key, ans in train:
        by_key.setdefault(key, {}).setdefault(ans, 0)
        by_key[key][ans] += 1
    best = {k: max(sorted(v), key=v.get) for k, v in by_key.items()}

    def score(key, ans) -> float:
        if key in fixed:
            return fixed[key]
        if isinstance(ans, list):  # VQA: the official soft score against the 10 human answers
            return vqa_score(best.get(key, ""), ans)
        return float(best.get(key) == ans)

    return 100 * sum(score(k, ans) for k, ans in test) / max(len(test), 1)


def chance_levels(root: Path) -> dict:
    """Chance levels per task and metric (%), computed from the written files; see MANIFEST 'chance_notes'."""
    def vqa_pairs(sub, all_answers=False):
        anns = json.loads((root / f"vqa/v2_mscoco_{sub}_annotations.json").read_text())["annotations"]
        if all_answers:
            return [(x["question_type"], [a["answer"] for a in x["answers"]]) for x in anns]
        return [(x["question_type"], x["multiple_choice_answer"]) for x in anns]

    def gqa_pairs(name):
        qs = json.loads((root / f"gqa/{name}_balanced_questions.json").read_text())
        return [(q["types"]["detailed"], q["answer"]) for q in qs.values()]

    def best_constant(rows, field):
        c = Counter(r[field] for r in rows)
        return 100 * max(c.values()) / max(sum(c.values()), 1)

    ve_test = [json.loads(line) for line in (root / "snli_ve/snli_ve_test.jsonl").read_text().splitlines()]
    nl_dev = [json.loads(line) for line in (root / "nlvr2/dev.json").read_text().splitlines()]
    flickr = json.loads((root / "flickr30k/dataset_flickr30k.json").read_text())["images"]
    n_test = sum(i["split"] == "test" for i in flickr)
    refs = safe_load(root / "refcoco_plus/refs(unc).p")
    val_refs = [r for r in refs if r["split"] == "val"]
    n_regions = [len(np.load(root / f"features/uniter/{r['image_id']}.npz")["conf"]) for r in val_refs]
    return {
        "vqa": {"vqa_score": _prior_accuracy(vqa_pairs("train2014"), vqa_pairs("val2014", all_answers=True)),
                "accuracy": _prior_accuracy(vqa_pairs("train2014"), vqa_pairs("val2014"))},
        "gqa": {"accuracy": _prior_accuracy(gqa_pairs("train"), gqa_pairs("testdev"), {"chooseColor": 0.5})},
        "nlvr2": {"accuracy": best_constant(nl_dev, "label")},
        "snli_ve": {"accuracy": best_constant(ve_test, "gold_label")},
        "refcoco_plus": {"accuracy": 100 * float(np.mean([1 / n for n in n_regions])) if n_regions else 0.0},
        "retrieval": {"r_mean": _retrieval_chance(n_test, 5 * n_test)},
        "vcr": {"q2a": 25.0, "qa2r": 25.0, "q2ar": 6.25},
    }


CHANCE_NOTES = {
    "vqa": "answering the train majority answer of each question_type (a language prior): vqa_score = official soft accuracy on val2014, accuracy = exact match with multiple_choice_answer",
    "gqa": "testdev accuracy of the train majority answer of each detailed type (a language prior); "
           "1/2 for 'choose' questions, which name both candidate answers",
    "nlvr2": "dev accuracy of the best constant label (labels are balanced: 50)",
    "snli_ve": "test accuracy of the best constant label (labels are balanced: ~33)",
    "refcoco_plus": "val: mean of 1 / number of region boxes (a uniformly random box)",
    "retrieval": "test r_mean of a random ranking (IR R@k = k/N, TR R@k over 5 captions per image)",
    "vcr": "uniform over 4 shuffled choices; Q->AR needs both",
}


def _build(root: Path, seed: int, scale_name: str) -> dict:
    scale = SCALES[scale_name]
    w = WorldWriter(root, seed)
    rng = w.rng("shared")
    pools = {"train": [w.add(sample_scene(rng, w.new_id())) for _ in range(scale.shared_train)],
             "val": [w.add(sample_scene(rng, w.new_id())) for _ in range(scale.shared_eval)]}
    counts = {
        "vqa": vqa.write(w, pools, scale.per_image),
        "gqa": gqa.write(w, pools, scale.per_image),
        "vcr": vcr.write(w, pools, scale.per_image),
    }
    counts["nlvr2"], _ = nlvr2.write(w, dict(zip(nlvr2.SPLITS, scale.nlvr2_sets)))
    counts["snli_ve"], _ = snli_ve.write(w, dict(zip(snli_ve.SPLITS, scale.ve_images)), scale.per_image + 1)
    counts["refcoco_plus"], _ = refcoco_plus.write(w, dict(zip(refcoco_plus.SPLITS, scale.ref_images)),
                                                   scale.refs_per_image)
    counts["retrieval"], _ = captions.write_retrieval(w, pools["train"], scale.retrieval_eval)
    counts["captions"], _ = captions.write_captions(w, pools["train"], scale.caption_val)
    w.finish()
    manifest = {
        "version": VERSION, "seed": seed, "scale": scale_name, "scale_params": asdict(scale),
        "image_size": [IMAGE_SIZE, IMAGE_SIZE], "num_images": len(w.images),
        "feature_dim": FEAT_DIM, "feature_names": list(FEATURE_NAMES),
        "features": {"uniter": "features/uniter/<image_id>.npz", "lxmert": "features/lxmert/features.tsv"},
        "counts": counts, "chance": chance_levels(root), "chance_notes": CHANCE_NOTES,
        "vocab_size": len(w.words),
    }
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def generate_world(out_dir: str | os.PathLike, seed: int = 0, scale: str = "default") -> dict:
    """Write the toyland world into `out_dir` and return its manifest.

    Files are written into a sibling `.<name>.partial-<pid>` directory that is renamed to `out_dir`
    only when complete, so an interrupted generation never looks finished. An existing world with
    the same seed and scale is reused; any other non-empty `out_dir` is refused."""
    if scale not in SCALES:
        raise DataError(f"toyland scale '{scale}' is unknown: expected one of {', '.join(SCALES)}")
    out = Path(out_dir)
    if out.exists():
        man = out / "MANIFEST.json"
        if man.is_file():
            found = check_world_manifest(man, read_json(man, MAX_STORE_BYTES))
            if (found.get("seed"), found.get("scale"), found.get("version")) == (seed, scale, VERSION):
                return found
            raise DataError(f"{out}: holds a toyland world with seed {found.get('seed')} scale "
                            f"{found.get('scale')} version {found.get('version')}, expected seed {seed} scale "
                            f"{scale} version {VERSION}; remove it or pick another")
        if any(out.iterdir()):
            raise DataError(f"{out}: exists and is not a toyland world (no MANIFEST.json); remove it or pick another")
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(out)
    # pid (to spot leftovers of dead writers) + a random tag (two hosts sharing a folder may share a pid).
    partial = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = _build(partial, int(seed), scale)
        try:
            os.replace(partial, out)
        except OSError:
            # Another runner finished the same world first: use theirs (byte-identical for one seed).
            if not (out / "MANIFEST.json").is_file():
                raise
            shutil.rmtree(partial, ignore_errors=True)
            return generate_world(out, seed, scale)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _remove_dead_partials(out: Path) -> None:
    """Partial worlds left by writers that were killed (their pid is gone on this host)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
