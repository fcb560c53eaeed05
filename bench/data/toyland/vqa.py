"""VQA v2 in its distributed layout: questions JSON + annotations JSON (10 annotator answers each)."""

from __future__ import annotations

import numpy as np

from bench.data.toyland.balance import Cand, TemplateBalancer
from bench.data.toyland.language import NUMBER_WORDS, a, noun, sentence, the
from bench.data.toyland.scene import (
    COLOUR_NAMES,
    RELATIONS,
    SHAPES,
    SIZE_NAMES,
    Scene,
    matches,
    random_description,
    unique_descriptions,
)
from bench.data.toyland.writer import ImageInfo, WorldWriter

SUBTYPES = {"train": "train2014", "val": "val2014"}
YES_NO = ("yes", "no")
COUNTS = ("0", "1", "2", "3", "4")
# (question_type, answer_type, answer space) per template kind
KINDS = {
    "color": ("what color is the", "other", COLOUR_NAMES),
    "shape": ("what shape is the", "other", SHAPES),
    "size": ("what size is the", "other", SIZE_NAMES),
    "count": ("how many", "number", COUNTS),
    "exist": ("is there a", "yes/no", YES_NO),
    "relation": ("is the", "yes/no", YES_NO),
}
# Mix of question types. Answers are balanced within each type, so the per-type majority baseline
# is 1/(number of answers); yes/no (and size) questions are kept at about a third, below VQA v2's
# 38%, so that this language prior stays near 30% rather than being dominated by 50% types.
SHARES = {"color": 0.25, "shape": 0.22, "size": 0.07, "count": 0.18, "exist": 0.14, "relation": 0.14}


def candidates(scene: Scene, rng: np.random.Generator) -> list[Cand]:
    """Every question toyland can ask about `scene`, keyed by template, labelled by answer."""
    out = []
    vis = scene.visible
    for o in vis:
        for kind, attr in (("color", "colour"), ("shape", "shape"), ("size", "size")):
            for d in unique_descriptions(scene, o, exclude=(attr,)):
                out.append(Cand((kind, tuple(d)), o.get(attr), f"what {kind} is {the(d)}?"))
    for attr, values in (("colour", COLOUR_NAMES), ("shape", SHAPES)):
        for v in values:
            n = sum(matches(o, {attr: v}) for o in vis)
            if n < len(COUNTS):
                out.append(Cand(("count", attr), str(n), f"how many {noun({attr: v}, plural=True)} are there?"))
    for _ in range(8):
        d = random_description(rng)
        yes = any(matches(o, d) for o in vis)
        out.append(Cand(("exist", tuple(d)), YES_NO[not yes], f"is there {a(d)}?"))
    for o in vis:
        for d in unique_descriptions(scene, o)[:2]:
            out.append(Cand(("exist", tuple(d)), "yes", f"is there {a(d)}?"))
    for x in vis:
        for y in vis:
            if x is y:
                continue
            dx, dy = unique_descriptions(scene, x), unique_descriptions(scene, y)
            if not dx or not dy:
                continue
            for rel, fn in RELATIONS.items():
                q = f"is {the(dx[0])} {rel} {the(dy[0])}?"
                out.append(Cand(("relation", rel), YES_NO[not fn(x, y)], q))
    return out


def annotator_answers(rng: np.random.Generator, answer: str, space: tuple[str, ...]) -> list[dict]:
    """10 human answers: mostly the right one (sometimes as a synonym), a few wrong ones."""
    n_right = int(rng.choice([10, 10, 9, 9, 8, 8, 7, 6, 5, 4]))
    others = [s for s in space if s != answer]
    if len(others) == 1:  # yes/no: a plurality needs at least 6 of 10
        n_right = max(n_right, 6)
    while True:
        wrong = [others[int(rng.integers(len(others)))] for _ in range(10 - n_right)]
        if all(wrong.count(w) < n_right for w in wrong):
            break
    raw = []
    for _ in range(n_right):
        r = rng.random()
        if answer.isdigit() and r < 0.3:
            raw.append(NUMBER_WORDS[int(answer)])  # "two" for "2": equal after VQA normalisation
        elif r < 0.1:
            raw.append(answer.capitalize())
        else:
            raw.append(answer)
    raw += wrong
    order = rng.permutation(10)
    conf = ("yes", "yes", "yes", "maybe")
    return [{"answer": raw[i], "answer_confidence": conf[int(rng.integers(4))], "answer_id": k + 1}
            for k, i in enumerate(order)]


def write(w: WorldWriter, pools: dict[str, list[ImageInfo]], per_image: int) -> dict[str, int]:
    counts = {}
    for split, subtype in SUBTYPES.items():
        rng = w.rng("vqa", split)
        bal = TemplateBalancer(rng, SHARES)
        questions, annotations = [], []
        for info in pools[split]:
            picks = bal.pick_many(candidates(info.scene, rng), per_image)
            for k, c in enumerate(picks):
                qid = int(info.image_id) * 10 + k
                qtype, atype, space = KINDS[c.key[0]]
                text = sentence(c.item)
                answers = annotator_answers(rng, c.label, space)
                w.text(text, *(x["answer"] for x in answers))
                questions.append({"image_id": int(info.image_id), "question": text, "question_id": qid})
                annotations.append({"question_type": qtype, "multiple_choice_answer": c.label, "answers": answers,
                                    "image_id": int(info.image_id), "answer_type": atype, "question_id": qid})
        info_block = {"description": "toyland VQA v2-format questions", "version": "2.0"}
        w.write_json(f"vqa/v2_OpenEnded_mscoco_{subtype}_questions.json",
                     {"info": info_block, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
                      "data_subtype": subtype, "questions": questions})
        w.write_json(f"vqa/v2_mscoco_{subtype}_annotations.json",
                     {"info": info_block, "license": {}, "data_subtype": subtype, "annotations": annotations})
        counts[split] = len(questions)
    return counts
