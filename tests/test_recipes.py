"""The recipe table (bench/tasks/tasks.yaml): the papers' numbers with their sources, checked against
how they were derived; one-line errors for a bad recipe; `ticketbench recipes`."""

import math

import pytest

from bench.cli import main
from bench.core.errors import ConfigError
from bench.tasks import TASKS, base
from bench.tasks.base import PAPER_FAMILIES, declare, describe_recipes, parse_recipes

TASK_NAMES = ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr")


def test_every_paper_recipe_names_its_source_and_text_length():
    for name in TASK_NAMES:
        spec = TASKS.get(name)
        for family in PAPER_FAMILIES:
            note = spec.recipe_notes[family]
            assert len(note.source) > 40, (name, family)
            assert note.text_len and note.text_len >= 20, (name, family)


def test_uniter_token_batches_give_the_released_tokens_per_step():
    """UNITER's train_batch_size is tokens per GPU: tokens a step = per GPU × GPUs × accumulation."""
    released = {  # task: (config file, tokens per GPU, GPUs, accumulation, steps, lr)
        "vqa": ("train-vqa-base-4gpu.json", 5120, 4, 5, 6000, 8e-5),
        "nlvr2": ("train-nlvr2-base-1gpu.json", 10240, 1, 1, 8000, 3e-5),
        "snli_ve": ("train-ve-base-2gpu.json", 4096, 2, 4, 4000, 8e-5),
        "vcr": ("train-vcr-base-4gpu.json", 4000, 4, 5, 8000, 6e-5),
    }
    for task, (path, per_gpu, gpus, accum, steps, lr) in released.items():
        s, note = TASKS.get(task).recipe("uniter"), TASKS.get(task).recipe_notes["uniter"]
        assert (s.batch_tokens, s.grad_accum, s.steps, s.lr, s.warmup) == (per_gpu * gpus, accum, steps, lr, 0.1)
        digits = note.source.replace(",", "")
        assert f"config/{path}" in note.source and f"{per_gpu} tokens" in digits and f"{gpus} GPU" in digits
    vqa = TASKS.get("vqa").recipe("uniter")
    assert vqa.head_lr_mult == 10.0 and TASKS.get("vcr").recipe_notes["uniter"].text_len == 220
    # Examples, not tokens, where UNITER batches by examples: RefCOCO+ 128 x 1 GPU, retrieval 40 x 8 GPUs x 4.
    ref, itm = TASKS.get("refcoco_plus").recipe("uniter"), TASKS.get("retrieval").recipe("uniter")
    assert (ref.batch_tokens, ref.batch_size, ref.grad_accum, ref.steps) == (None, 128, 1, 10000)
    assert (itm.batch_tokens, itm.batch_size * itm.grad_accum, itm.steps, itm.lr) == (None, 1280, 20000, 5e-5)


def test_epoch_based_steps_follow_from_the_declared_split_sizes():
    """LXMERT: 4 epochs of 32 with drop_last; ViLT: 10 epochs, the last batch kept."""
    for task in ("nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr"):
        n = TASKS.get(task).sizes["train"]
        s = TASKS.get(task).recipe("lxmert")
        assert s.batch_size == 32 and s.steps == 4 * (n // 32), task
    gqa = TASKS.get("gqa").sizes
    assert TASKS.get("gqa").recipe("lxmert").steps == 4 * ((gqa["train"] + gqa["val"]) // 32)
    for task, batch in (("nlvr2", 128), ("retrieval", 256), ("gqa", 256), ("snli_ve", 128), ("vcr", 128)):
        n = TASKS.get(task).sizes["train"]
        s = TASKS.get(task).recipe("vilt")
        assert s.batch_size == batch and s.steps == 10 * math.ceil(n / batch), task
    # ViLT's heads: x10 for VQA only (its config's lr_mult), 1 for NLVR2 and retrieval.
    assert [TASKS.get(t).recipe("vilt").head_lr_mult for t in ("vqa", "nlvr2", "retrieval")] == [10.0, 1.0, 1.0]


def test_toy_and_minilm_recipes_are_the_measured_ones():
    toy = {"vqa": (450, 16, 1e-3), "gqa": (150, 32, 1e-3), "nlvr2": (600, 32, 1e-3), "snli_ve": (150, 32, 1e-3),
           "refcoco_plus": (150, 32, 1e-3), "retrieval": (100, 16, 1e-3), "vcr": (150, 8, 1e-3)}
    minilm = {"vqa": (600, 32), "gqa": (600, 32), "nlvr2": (600, 32), "snli_ve": (600, 32),
              "refcoco_plus": (800, 32), "retrieval": (800, 32), "vcr": (800, 16)}
    for task in TASK_NAMES:
        t, m = TASKS.get(task).recipe("toy"), TASKS.get(task).recipe("minilm")
        assert (t.steps, t.batch_size, t.lr, t.warmup, t.head_lr_mult, t.grad_accum, t.batch_tokens) == (
            *toy[task], 0.1, 1.0, 1, None)
        assert (m.steps, m.batch_size, m.lr, m.warmup, m.head_lr_mult, m.grad_accum, m.batch_tokens) == (
            *minilm[task], 1e-4, 0.1, 10.0, 1, None)


def test_an_unknown_recipe_field_is_one_line_naming_task_family_and_field(monkeypatch):
    good = {"toy": {"steps": 1}}
    with pytest.raises(ConfigError) as e:
        parse_recipes("vqa", {**good, "uniter": {"stepz": 10, "source": "somewhere"}})
    msg = str(e.value)
    assert "\n" not in msg and "task 'vqa'" in msg and "recipe 'uniter'" in msg and "'stepz'" in msg
    assert "did you mean 'steps'" in msg
    # The same check runs where tasks.yaml is read.
    decl = {"vqa": {**base.declarations()["vqa"], "recipes": {**good, "lxmert": {"lr": 1e-5, "epochs": 4,
                                                                                 "source": "x"}}}}
    monkeypatch.setattr(base, "declarations", lambda: decl)
    with pytest.raises(ConfigError, match=r"task 'vqa', recipe 'lxmert': unknown field 'epochs'"):
        declare("vqa", loader=lambda *a: [], evaluator=lambda *a: {})


def test_bad_recipe_values_and_missing_sources_are_refused():
    good = {"toy": {"steps": 1}}
    with pytest.raises(ConfigError, match=r"recipe 'uniter'.*batch_tokens"):
        parse_recipes("vqa", {**good, "uniter": {"batch_tokens": 0, "source": "x"}})
    with pytest.raises(ConfigError, match=r"recipe 'vilt': source"):
        parse_recipes("vqa", {**good, "vilt": {"steps": 10}})
    with pytest.raises(ConfigError, match=r"text_len"):
        parse_recipes("vqa", {**good, "uniter": {"text_len": "long", "source": "x"}})
    with pytest.raises(ConfigError, match=r"'toy' recipe"):
        parse_recipes("vqa", {"uniter": {"source": "x"}})
    settings, notes = parse_recipes("vqa", {**good, "lxmert": {"betas": [0.9, 0.999], "source": " a\n  b "}})
    assert settings["lxmert"].betas == (0.9, 0.999) and notes["lxmert"].source == "a b"


def test_recipes_command_prints_the_table(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[0]
    for column in ("task", "family", "steps", "batch", "accum", "effective batch", "lr", "head lr ×", "warm-up",
                   "weight decay", "betas", "clip", "text", "loss", "source"):
        assert column in header
    # five families per task, and toy-vilt's own budget on ViLT's six tasks (not RefCOCO+); the BERT study's
    # nine GLUE tasks, SQuAD and text MLM have two (toy, bert)
    assert len(out) == 1 + len(TASK_NAMES) * 5 + len(TASK_NAMES) - 1 + 11 * 2
    assert main(["recipes", "--family", "uniter", "--task", "vqa"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2
    vqa = rows[1]
    for cell in ("vqa", "uniter", "6,000", "20,480 tok", "102,400 tok", "8e-05", "10%", "60", "soft_bce",
                 "ChenRocks/UNITER config/train-vqa-base-4gpu.json"):
        assert cell in vqa
    assert "1,280 ex" in describe_recipes(family="uniter", task="retrieval")
    lxmert = describe_recipes(family="lxmert", task="gqa").splitlines()[1]
    assert "0.9/0.999" in lxmert and "134,380" in lxmert and "airsplay/lxmert run/gqa_finetune.bash" in lxmert
    assert "  off  " in describe_recipes(family="vilt", task="nlvr2").splitlines()[1]  # ViLT clips no gradient


def test_recipes_command_refuses_an_unknown_family_in_one_line(capsys):
    assert main(["recipes", "--family", "unitr"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unitr" in err and "did you mean 'uniter'" in err
    assert main(["recipes", "--task", "vqa2"]) == 2
    assert "did you mean 'vqa'" in capsys.readouterr().err


def test_declared_split_sizes_are_checked():
    from bench.tasks.base import check_sizes

    splits = ["train", "dev"]
    check_sizes("t", {"splits": splits, "sizes": {"source": "s", "train": 10, "dev": 2}, "sequences": 2, "mined": 0})
    with pytest.raises(ConfigError, match=r"task 't': sizes: unknown split 'devv' \(did you mean 'dev'\?\)"):
        check_sizes("t", {"splits": splits, "sizes": {"source": "s", "devv": 2}})
    with pytest.raises(ConfigError, match=r"sizes.train: expected a positive count"):
        check_sizes("t", {"splits": splits, "sizes": {"source": "s", "train": -1}})
    with pytest.raises(ConfigError, match=r"sizes.source"):
        check_sizes("t", {"splits": splits, "sizes": {"train": 1}})
    with pytest.raises(ConfigError, match=r"sequences: expected a positive integer"):
        check_sizes("t", {"splits": splits, "sequences": 0})


def test_a_preset_recipe_wins_over_its_familys():
    """toy-vilt fine-tunes with its own measured budget; the other toy presets with the toy family's."""
    from bench.config import load_config
    from bench.plan import build_plan

    vilt = build_plan(load_config("toyland-vilt"))
    uniter = build_plan(load_config("toyland"))
    for task in ("vqa", "gqa"):
        assert vilt.finetune_settings(task, 0).steps == 3 * uniter.finetune_settings(task, 0).steps
    assert TASKS.get("refcoco_plus").recipe_key("toy", "toy-vilt") == "toy"  # no own recipe: the family's
