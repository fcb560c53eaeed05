"""show_world: counts, answer distributions and chance levels as text, plus a PNG contact sheet."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.core.errors import DataError
from bench.core.io import MAX_STORE_BYTES, read_json
from bench.core.safe_pickle import safe_load
from bench.core.validate import check_world_manifest

TILE = 192  # 64 px images drawn 3x
TEXT_H = 64


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _vcr_text(tokens: list, objects: list[str]) -> str:
    return " ".join(f"[{t[0]}:{objects[t[0]]}]" if isinstance(t, list) else t for t in tokens)


def _samples(root: Path) -> list[tuple[str, list[str], str, list]]:
    """(task, image ids, caption text, boxes to draw as (x1, y1, x2, y2, label)) per sample."""
    out = []
    q = json.loads((root / "vqa/v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    an = json.loads((root / "vqa/v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    for x, y in list(zip(q, an))[:2]:
        out.append(("VQA", [str(x["image_id"])], f"{x['question']} -> {y['multiple_choice_answer']}", []))
    g = json.loads((root / "gqa/testdev_balanced_questions.json").read_text())
    for x in list(g.values())[:2]:
        out.append(("GQA", [x["imageId"]], f"{x['question']} -> {x['answer']}", []))
    for x in _jsonl(root / "nlvr2/dev.json")[:2]:
        stem = x["identifier"].rsplit("-", 1)[0]
        out.append(("NLVR2", [f"{stem}-img0", f"{stem}-img1"], f"{x['sentence']} -> {x['label']}", []))
    for x in _jsonl(root / "snli_ve/snli_ve_test.jsonl")[:2]:
        out.append(("SNLI-VE", [x["Flikr30kID"].rsplit(".", 1)[0]], f"{x['sentence2']} -> {x['gold_label']}", []))
    refs = safe_load(root / "refcoco_plus/refs(unc).p")
    anns = {a["id"]: a for a in json.loads((root / "refcoco_plus/instances.json").read_text())["annotations"]}
    for r in [r for r in refs if r["split"] == "val"][:2]:
        x, y, w, h = anns[r["ann_id"]]["bbox"]
        out.append(("RefCOCO+", [str(r["image_id"])], " | ".join(s["sent"] for s in r["sentences"]),
                    [(x, y, x + w, y + h, "")]))
    fl = json.loads((root / "flickr30k/dataset_flickr30k.json").read_text())["images"]
    for x in [i for i in fl if i["split"] == "test"][:2]:
        out.append(("Flickr30k", [x["filename"].rsplit(".", 1)[0]], x["sentences"][0]["raw"], []))
    for x in _jsonl(root / "vcr/val.jsonl")[:2]:
        meta = json.loads((root / "vcr" / x["metadata_fn"]).read_text())
        objs = x["objects"]
        text = (f"{_vcr_text(x['question'], objs)} -> {_vcr_text(x['answer_choices'][x['answer_label']], objs)}"
                f" because {_vcr_text(x['rationale_choices'][x['rationale_label']], objs)}")
        boxes = [(*b[:4], str(i)) for i, b in enumerate(meta["boxes"])]
        out.append(("VCR", [x["img_fn"].rsplit(".", 1)[0]], text, boxes))
    return out


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
        else:
            lines.append(line)
            line = word
    return lines + [line]


def contact_sheet(root: Path, png_path: Path) -> None:
    samples = _samples(root)
    cols = 4
    widths = [TILE * len(s[1]) for s in samples]
    cell_w = max(widths) + 8
    rows = (len(samples) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w, rows * (TILE + TEXT_H + 22)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    for k, (task, ids, text, boxes) in enumerate(samples):
        x0, y0 = (k % cols) * cell_w + 4, (k // cols) * (TILE + TEXT_H + 22) + 4
        draw.text((x0, y0), task, fill="black", font=ImageFont.load_default(size=13))
        for j, iid in enumerate(ids):
            img = Image.open(root / "images" / f"{iid}.png").convert("RGB").resize((TILE, TILE), Image.NEAREST)
            sheet.paste(img, (x0 + j * TILE, y0 + 16))
        s = TILE / 64
        for x1, y1, x2, y2, label in boxes:
            draw.rectangle((x0 + x1 * s, y0 + 16 + y1 * s, x0 + x2 * s - 1, y0 + 16 + y2 * s - 1),
                           outline=(0, 0, 0), width=2)
            if label:
                draw.text((x0 + x1 * s + 2, y0 + 16 + y1 * s), label, fill="black", font=font)
        for i, line in enumerate(_wrap(draw, text, font, widths[k])[:5]):
            draw.text((x0, y0 + 18 + TILE + i * 12), line, fill="black", font=font)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)


def _distribution(values: list[str], top: int = 8) -> str:
    c = Counter(values)
    n = max(len(values), 1)
    return ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in c.most_common(top))


def summary(root: Path, manifest: dict) -> str:
    lines = [f"toyland world {root}  seed {manifest['seed']}  scale {manifest['scale']}  "
             f"images {manifest['num_images']}  feature dim {manifest['feature_dim']}  vocab {manifest['vocab_size']}",
             "", "counts per task and split:"]
    for task, splits in manifest["counts"].items():
        lines.append(f"  {task:<13} " + "  ".join(f"{s} {n}" for s, n in splits.items()))
    lines += ["", "answer distributions (train):"]
    an = json.loads((root / "vqa/v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    for atype in sorted({a["answer_type"] for a in an}):
        lines.append(f"  vqa {atype:<9} " + _distribution([a["multiple_choice_answer"] for a in an
                                                             if a["answer_type"] == atype]))
    g = json.loads((root / "gqa/train_balanced_questions.json").read_text()).values()
    lines.append("  gqa           " + _distribution([q["answer"] for q in g]))
    lines.append("  nlvr2         " + _distribution([r["label"] for r in _jsonl(root / "nlvr2/train.json")]))
    lines.append("  snli_ve       " + _distribution([r["gold_label"] for r in _jsonl(root / "snli_ve/snli_ve_train.jsonl")]))
    vcr = _jsonl(root / "vcr/train.jsonl")
    lines.append("  vcr answer    " + _distribution([str(r["answer_label"]) for r in vcr]))
    lines.append("  vcr rationale " + _distribution([str(r["rationale_label"]) for r in vcr]))
    lines += ["", "chance levels (%):"]
    for task, metrics in manifest["chance"].items():
        vals = "  ".join(f"{m} {v:.1f}" for m, v in metrics.items())
        lines.append(f"  {task:<13} {vals}   ({manifest['chance_notes'][task]})")
    return "\n".join(lines)


def show_world(world_dir, png_path) -> str:
    """Describe a toyland world as text (returned) and write a PNG contact sheet to `png_path`."""
    root = Path(world_dir)
    man = root / "MANIFEST.json"
    if not man.is_file():
        raise DataError(f"{man}: file not found (not a finished toyland world)")
    manifest = check_world_manifest(man, read_json(man, MAX_STORE_BYTES))
    contact_sheet(root, Path(png_path))
    return summary(root, manifest)
