"""Toyland: determinism, formats, features, leak-freedom, and loading through the task loaders."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import DataError
from bench.data.toyland import FEAT_DIM, generate_world, show_world
from bench.data.toyland.features import LXMERT_FIELDS
from bench.data.toyland.language import tokenize


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "world"
    generate_world(out, seed=0, scale="smoke")
    return out


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _refs(world: Path) -> list[dict]:
    return pickle.loads((world / "refcoco_plus/refs(unc).p").read_bytes())  # our own generated file


def referenced_images(world: Path) -> dict[str, set[str]]:
    """task/split -> image ids referenced by that split's text files."""
    out: dict[str, set[str]] = {}
    for sub in ("train2014", "val2014"):
        qs = json.loads((world / f"vqa/v2_OpenEnded_mscoco_{sub}_questions.json").read_text())["questions"]
        out[f"vqa/{sub}"] = {str(q["image_id"]) for q in qs}
    for name in ("train", "testdev"):
        out[f"gqa/{name}"] = {q["imageId"] for q in json.loads((world / f"gqa/{name}_balanced_questions.json").read_text()).values()}
    for split in ("train", "dev"):
        stems = {r["identifier"].rsplit("-", 1)[0] for r in _jsonl(world / f"nlvr2/{split}.json")}
        out[f"nlvr2/{split}"] = {f"{s}-img{k}" for s in stems for k in (0, 1)}
    for split in ("train", "dev", "test"):
        out[f"snli_ve/{split}"] = {r["Flikr30kID"][:-4] for r in _jsonl(world / f"snli_ve/snli_ve_{split}.jsonl")}
    for split in ("train", "val", "testA", "testB"):
        out[f"refcoco_plus/{split}"] = {str(r["image_id"]) for r in _refs(world) if r["split"] == split}
    for img in json.loads((world / "flickr30k/dataset_flickr30k.json").read_text())["images"]:
        out.setdefault(f"retrieval/{img['split']}", set()).add(img["filename"][:-4])
    for split in ("train", "val"):
        out[f"vcr/{split}"] = {r["img_fn"][:-4] for r in _jsonl(world / f"vcr/{split}.jsonl")}
    for split in ("train", "val"):
        caps = json.loads((world / f"captions/captions_{split}.json").read_text())
        out[f"captions/{split}"] = {str(i["id"]) for i in caps["images"]}
    return out


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=0, scale="smoke")
    assert _hashes(world) == _hashes(again)


def test_existing_world_is_reused_and_a_foreign_directory_refused(world, tmp_path):
    assert generate_world(world, seed=0, scale="smoke")["seed"] == 0
    with pytest.raises(DataError, match="seed 0 scale smoke version 2, expected seed 3"):
        generate_world(world, seed=3, scale="smoke")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a toyland world"):
        generate_world(junk, seed=0, scale="smoke")
    with pytest.raises(DataError, match="scale 'huge' is unknown"):
        generate_world(tmp_path / "w", scale="huge")
    assert not list(tmp_path.glob(".*partial*"))


def test_manifest_counts_match_files(world):
    m = json.loads((world / "MANIFEST.json").read_text())
    assert m["feature_dim"] == FEAT_DIM and len(m["feature_names"]) == FEAT_DIM
    c = m["counts"]
    qs = json.loads((world / "vqa/v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    assert c["vqa"]["train"] == len(qs) >= 200
    assert c["nlvr2"]["dev"] == len(_jsonl(world / "nlvr2/dev.json"))
    assert c["snli_ve"]["test"] == len(_jsonl(world / "snli_ve/snli_ve_test.jsonl"))
    for task in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "vcr"):
        assert all(n > 0 for n in c[task].values()), task
    assert set(m["chance"]) == {"vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr"}
    assert 30 <= m["chance"]["snli_ve"]["accuracy"] <= 40 and m["chance"]["vcr"]["q2ar"] == 6.25


def test_real_format_details(world):
    ann = json.loads((world / "vqa/v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    assert all(len(a["answers"]) == 10 for a in ann)
    assert {a["answer_type"] for a in ann} == {"yes/no", "number", "other"}
    raw = Counter(x["answer"] for a in ann for x in a["answers"])
    assert any(w in raw for w in ("one", "two", "three")), "number-word synonyms exercise normalisation"
    assert any(len({x["answer"] for x in a["answers"]}) > 1 for a in ann), "annotators disagree"
    for r in _jsonl(world / "nlvr2/train.json"):
        assert re.fullmatch(r"train-\d+-\d+-\d+", r["identifier"]) and r["label"] in ("True", "False")
    refs = _refs(world)
    assert all(type(r) is dict and isinstance(r["image_id"], int) and r["sentences"][0]["tokens"] for r in refs)
    assert (world / "refcoco_plus/refs(unc).p").read_bytes()[1] <= 4  # pickle protocol
    for r in _jsonl(world / "vcr/val.jsonl"):
        assert len(r["answer_choices"]) == 4 and len(r["rationale_choices"]) == 4
        assert any(isinstance(t, list) for t in r["question"])
        meta = json.loads((world / "vcr" / r["metadata_fn"]).read_text())
        assert len(meta["boxes"]) == len(r["objects"])
    fl = json.loads((world / "flickr30k/dataset_flickr30k.json").read_text())["images"]
    assert all(len(i["sentences"]) == 5 for i in fl)


def test_every_referenced_image_has_png_and_features_in_both_layouts(world):
    ids = set().union(*referenced_images(world).values())
    tsv = {}
    for line in (world / "features/lxmert/features.tsv").read_text().splitlines():
        row = dict(zip(LXMERT_FIELDS, line.split("\t")))
        tsv[row["img_id"]] = row
    for iid in ids:
        assert (world / "images" / f"{iid}.png").is_file(), iid
        z = np.load(world / "features/uniter" / f"{iid}.npz")
        n = len(z["conf"])
        assert z["features"].shape == (n, FEAT_DIM) and z["features"].dtype == np.float32
        assert z["norm_bb"].shape == (n, 7) and np.all((z["norm_bb"] >= 0) & (z["norm_bb"] <= 1))
        row = tsv[iid]
        assert int(row["num_boxes"]) == n
        import base64
        feats = np.frombuffer(base64.b64decode(row["features"]), np.float32).reshape(n, FEAT_DIM)
        boxes = np.frombuffer(base64.b64decode(row["boxes"]), np.float32).reshape(n, 4)
        assert np.array_equal(feats, z["features"])
        assert np.allclose(boxes / 64.0, z["norm_bb"][:, :4])


def test_refcoco_gt_box_is_a_region_box_and_not_always_first(world):
    anns = {a["id"]: a for a in json.loads((world / "refcoco_plus/instances.json").read_text())["annotations"]}
    positions = []
    for r in _refs(world):
        x, y, w, h = anns[r["ann_id"]]["bbox"]
        bb = np.load(world / "features/uniter" / f"{r['image_id']}.npz")["norm_bb"][:, :4] * 64
        hit = np.nonzero(np.all(np.isclose(bb, [x, y, x + w, y + h]), axis=1))[0]
        assert len(hit) == 1
        positions.append(int(hit[0]))
        for s in r["sentences"]:
            assert not {"top", "bottom", "leftmost", "rightmost", "image", "corner"} & set(s["tokens"])
    assert len(set(positions)) > 3


def test_caption_images_are_disjoint_from_every_eval_split(world):
    refs = referenced_images(world)
    caption = refs["captions/train"] | refs["captions/val"]
    for key, ids in refs.items():
        if not key.startswith("captions") and not key.endswith("/train") and not key.endswith("/train2014"):
            assert not caption & ids, key


def test_vocab_covers_every_text(world):
    vocab = set((world / "vocab.txt").read_text().split("\n")) - {""}
    texts = [q["question"] for q in json.loads((world / "gqa/train_balanced_questions.json").read_text()).values()]
    texts += [r["sentence"] for r in _jsonl(world / "nlvr2/dev.json")]
    texts += [r["sentence2"] for r in _jsonl(world / "snli_ve/snli_ve_dev.jsonl")]
    texts += [a["caption"] for a in json.loads((world / "captions/captions_val.json").read_text())["annotations"]]
    assert {t for s in texts for t in tokenize(s)} <= vocab


def _bow_accuracy(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> float:
    """A text-only model: bag-of-words (unigrams + bigrams) softmax regression, trained by gradient descent."""
    def feats(text):
        toks = tokenize(text)
        return toks + [a + "_" + b for a, b in zip(toks, toks[1:])]

    vocab = {w: i for i, w in enumerate(sorted({f for t, _ in train for f in feats(t)}))}
    labels = sorted({y for _, y in train})
    lab = {y: i for i, y in enumerate(labels)}

    def matrix(rows):
        X = np.zeros((len(rows), len(vocab) + 1), np.float32)
        X[:, -1] = 1
        for i, (t, _) in enumerate(rows):
            for f in feats(t):
                if f in vocab:
                    X[i, vocab[f]] = 1
        return X

    X, Xt = matrix(train), matrix(test)
    Y = np.eye(len(labels), dtype=np.float32)[[lab[y] for _, y in train]]
    W = np.zeros((X.shape[1], len(labels)), np.float32)
    for _ in range(300):
        Z = X @ W
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        W -= 0.5 * (X.T @ (P - Y) / len(X) + 1e-3 * W)
    pred = [labels[i] for i in (Xt @ W).argmax(1)]
    return 100 * float(np.mean([p == y for p, (_, y) in zip(pred, test)]))


def test_text_alone_stays_near_chance(world):
    m = json.loads((world / "MANIFEST.json").read_text())
    vqa = {}
    for sub in ("train2014", "val2014"):
        qs = json.loads((world / f"vqa/v2_OpenEnded_mscoco_{sub}_questions.json").read_text())["questions"]
        an = json.loads((world / f"vqa/v2_mscoco_{sub}_annotations.json").read_text())["annotations"]
        vqa[sub] = [(q["question"], a["multiple_choice_answer"]) for q, a in zip(qs, an)]
    gqa = {n: [(q["question"], q["answer"]) for q in json.loads((world / f"gqa/{n}_balanced_questions.json").read_text()).values()]
           for n in ("train", "testdev")}
    nl = {s: [(r["sentence"], r["label"]) for r in _jsonl(world / f"nlvr2/{s}.json")] for s in ("train", "dev")}
    ve = {s: [(r["sentence2"], r["gold_label"]) for r in _jsonl(world / f"snli_ve/snli_ve_{s}.jsonl")]
          for s in ("train", "test")}
    cases = {"vqa": (vqa["train2014"], vqa["val2014"]), "gqa": (gqa["train"], gqa["testdev"]),
             "nlvr2": (nl["train"], nl["dev"]), "snli_ve": (ve["train"], ve["test"])}
    for task, (train, test) in cases.items():
        acc = _bow_accuracy(train, test)
        chance = m["chance"][task]["accuracy"]
        assert acc <= chance + 12, f"{task}: text-only {acc:.1f} vs chance {chance:.1f}"
    # sanity: the same classifier does learn when the label is in the text
    leaky = [(f"{t} {y}", y) for t, y in ve["train"]]
    assert _bow_accuracy(leaky, [(f"{t} {y}", y) for t, y in ve["test"]]) > 90


def test_features_carry_the_attributes(world):
    """The fixed extractor must make colour and shape linearly decodable from a region vector."""
    from bench.data.toyland.scene import COLOUR_NAMES, SHAPES
    anns = json.loads((world / "refcoco_plus/instances.json").read_text())
    cats = {c["id"]: c["name"] for c in anns["categories"]}
    X, shape = [], []
    for a in anns["annotations"]:
        z = np.load(world / "features/uniter" / f"{a['image_id']}.npz")
        x, y, w, h = a["bbox"]
        k = int(np.nonzero(np.all(np.isclose(z["norm_bb"][:, :4] * 64, [x, y, x + w, y + h]), axis=1))[0][0])
        X.append(z["features"][k])
        shape.append(cats[a["category_id"]])
    X = np.asarray(X)
    assert np.isfinite(X).all()
    half = len(X) // 2
    rows = [(" ".join(f"f{i}_{int(v * 8)}" for i, v in enumerate(x)), s) for x, s in zip(X, shape)]
    # a quantised-feature bag classifier separates the four shapes far above chance (25%)
    assert _bow_accuracy(rows[:half], rows[half:]) > 70
    assert len(set(shape)) == len(SHAPES) and len(COLOUR_NAMES) == 5


def test_features_are_standardised_by_a_world_independent_calibration(world):
    from bench.data.toyland.features import CALIBRATION_IMAGES, calibration, extract, extract_raw

    feats = np.concatenate([np.load(p)["features"] for p in sorted((world / "features/uniter").glob("*.npz"))])
    assert feats.shape[1] == FEAT_DIM
    varying = feats.std(0) > 0.2  # dims that move at all move on the unit scale
    assert varying.sum() >= FEAT_DIM - 4
    assert np.abs(feats.mean(0)[varying]).max() < 0.6
    assert 0.6 < np.median(feats.std(0)[varying]) < 1.6
    mean, std = calibration()
    assert mean.shape == std.shape == (FEAT_DIM,) and (std >= 0.05).all() and CALIBRATION_IMAGES >= 100
    pixels = np.zeros((64, 64, 3), np.uint8)
    boxes = np.asarray([[2, 2, 20, 20]], np.float32)
    np.testing.assert_allclose(extract(pixels, boxes) * std + mean, extract_raw(pixels, boxes), atol=1e-5)


def test_all_tasks_load_through_the_task_loaders(world):
    from bench.data.images import open_image_store
    from bench.tasks import TASKS

    written = {"vqa": ("train2014", "val2014"), "gqa": ("train", "testdev"), "nlvr2": ("train", "dev"),
               "snli_ve": ("train", "dev", "test"), "refcoco_plus": ("train", "val", "testA", "testB"),
               "retrieval": ("train", "val", "test"), "vcr": ("train", "val"), "mlm": ("train", "val")}
    uniter = open_image_store("uniter", world / "features/uniter")
    lxmert = open_image_store("lxmert", world / "features/lxmert/features.tsv")
    pixels = open_image_store("pixels", world / "images")
    assert uniter.feat_dim == lxmert.feat_dim == FEAT_DIM
    for task, splits in written.items():
        spec = TASKS.get(task)
        for split in splits:
            examples = spec.load(world, split)
            assert examples, (task, split)
            for ex in examples[:3]:
                for iid in ex.image_ids:
                    assert uniter.get(iid).features.shape[1] == FEAT_DIM
                    assert lxmert.get(iid).features.shape[1] == FEAT_DIM
                    assert pixels.get(iid).pixel_values.shape[0] == 3


def test_loaded_texts_have_no_unknown_words(world):
    # What the model reads is the loaders' rendering, not the files' words: VCR's object tags once
    # rendered as 'square1', [UNK] to the world's word-level tokenizer, so no question named its object.
    from bench.backbones.tokenizer import build_world_tokenizer
    from bench.tasks import TASKS

    tok = build_world_tokenizer(world / "vocab.txt")
    unk = tok.unk_token_id
    for task, split in (("vcr", "train"), ("vcr", "val"), ("vqa", "val2014"), ("gqa", "testdev"), ("nlvr2", "dev"),
                        ("snli_ve", "dev"), ("refcoco_plus", "val"), ("retrieval", "test"), ("mlm", "val")):
        for ex in TASKS.get(task).load(world, split):
            for text in ex.texts:
                assert unk not in tok(text)["input_ids"], (task, split, text)


def test_show_world_text_and_contact_sheet(world, tmp_path):
    from PIL import Image

    text = show_world(world, tmp_path / "sheet.png")
    for word in ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "chance", "captions"):
        assert word in text
    img = Image.open(tmp_path / "sheet.png")
    assert img.size[0] > 500 and img.size[1] > 500
    with pytest.raises(DataError, match="MANIFEST.json: file not found"):
        show_world(tmp_path, tmp_path / "x.png")


def _type_majority(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """question type -> share of its most common answer."""
    by_type: dict[str, Counter] = {}
    for t, ans in pairs:
        by_type.setdefault(t, Counter())[ans] += 1
    return {t: max(c.values()) / sum(c.values()) for t, c in by_type.items()}


def test_answers_are_balanced_within_each_question_type(world):
    m = json.loads((world / "MANIFEST.json").read_text())
    # the per-question-type majority baseline (a language prior) stays low
    assert m["chance"]["vqa"]["accuracy"] <= 35 and m["chance"]["gqa"]["accuracy"] <= 35
    anns = json.loads((world / "vqa/v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    vqa = _type_majority([(a["question_type"], a["multiple_choice_answer"]) for a in anns])
    qs = json.loads((world / "gqa/train_balanced_questions.json").read_text()).values()
    gqa = _type_majority([(q["types"]["detailed"], q["answer"]) for q in qs])
    assert len(vqa) == 6 and len(gqa) >= 8
    for name, share in {**vqa, **gqa}.items():
        assert share <= 0.6, f"{name}: majority answer {100 * share:.0f}%"
    vcr = _jsonl(world / "vcr/train.jsonl")
    right = _type_majority([(" ".join(r["question"][:3]), " ".join(
        t for t in r["answer_choices"][r["answer_label"]] if isinstance(t, str))) for r in vcr])
    assert len(right) == 3 and max(right.values()) <= 0.4, right


def test_vcr_choice_texts_do_not_tell_the_right_one():
    """A text-only prior over choice wordings (tags masked) stays near the 25% of a random choice."""
    import tempfile

    def wording(tokens):
        return " ".join("<tag>" if isinstance(t, list) else t for t in tokens)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "w"
        generate_world(root, seed=1, scale="smoke")
        rows = {s: _jsonl(root / f"vcr/{s}.jsonl") for s in ("train", "val")}
    for field, label in (("answer_choices", "answer_label"), ("rationale_choices", "rationale_label")):
        wins: Counter = Counter()
        for r in rows["train"]:
            for k, c in enumerate(r[field]):
                wins[wording(r["question"]), wording(c)] += 1 if k == r[label] else -1 / 3
        hits = [max(range(4), key=lambda k: (wins[wording(r["question"]), wording(r[field][k])], -k)) == r[label]
                for r in rows["val"]]
        assert 100 * np.mean(hits) <= 37, field


def test_template_balancer_balances_skewed_offers():
    from bench.data.toyland.balance import Cand, TemplateBalancer

    rng = np.random.default_rng(0)
    bal = TemplateBalancer(rng, {"yn": 0.5, "col": 0.5})
    picks = []
    for n in range(400):
        # "yes" is offered far more often than "no"; "col" answers are skewed towards red
        cands = [Cand(("yn", "t"), "yes", n), Cand(("col",), "red", n)]
        if n % 3 == 0:
            cands.append(Cand(("yn", "t"), "no", n))
        if n % 2 == 0:
            cands.append(Cand(("col",), ("blue", "green")[n % 4 // 2], n))
        picks.append(bal.pick(cands))
    counts = Counter((c.key[0], c.label) for c in picks)
    assert abs(counts["yn", "yes"] - counts["yn", "no"]) <= 3, counts
    assert max(counts[("col", c)] for c in ("red", "blue", "green")) - min(
        counts[("col", c)] for c in ("red", "blue", "green")) <= 3, counts
    assert abs(counts["yn", "yes"] + counts["yn", "no"] - 200) <= 20, "question types held at their shares"
    with pytest.raises(ValueError, match="no share"):
        bal.pick([Cand(("other",), "x", 0)])
