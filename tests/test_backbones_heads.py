"""TaskModel (classify, NLVR2 pairs, region, itm, choice) and PretrainModel (MLM, ITM, MRM) on toy backbones."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from test_backbones_models import FEAT, WORDS, pixels, regions

from bench.backbones import PretrainModel, TaskModel, create_backbone
from bench.core.errors import ConfigError, DataError
from bench.core.settings import TrainSettings
from bench.tasks.base import Example, TaskSpec


class RegionStore:
    """The region store's `get` contract over synthetic images with 3..6 regions."""

    feat_dim = FEAT

    def __init__(self, n: int = 6):
        self.images = {f"img{i}": regions(3 + i % 4, seed=i) for i in range(n)}
        self.reads = 0

    def get(self, image_id):
        self.reads += 1
        return self.images[image_id]


class PixelStore:
    def __init__(self, n: int = 4):
        self.images = {f"img{i}": pixels(seed=i) for i in range(n)}

    def get(self, image_id):
        return self.images[image_id]


def spec(head: str, loss: str = "cross_entropy", num_images: int = 1) -> TaskSpec:
    return TaskSpec(name=f"t-{head}", title="", head=head, loss=loss, metrics=("acc",), headline="acc", chance=0.0,
                    files={}, splits=("train", "dev"), loader=lambda *a: [], evaluator=lambda *a: {},
                    recipes={"toy": TrainSettings(steps=10, batch_size=4, lr=1e-3)}, num_images=num_images)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    p = tmp_path_factory.mktemp("w") / "vocab.txt"
    p.write_text("\n".join(WORDS) + "\n")
    return p


def backbone(preset, vocab):
    torch.manual_seed(0)
    return create_backbone(preset, vocab_path=vocab, feat_dim=None if preset == "toy-vilt" else FEAT)


TEXTS = ["a red cube", "the blue sphere", "a big green cone ?", "the small cube is left of a sphere"]


def test_classify_bce_and_ce_and_predict(vocab):
    store = RegionStore()
    labels = ["yes", "no", "2"]
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],), {"yes": 1.0, "2": 0.3} if i % 2 else {"no": 0.9, "oov": 0.3})
           for i in range(4)]
    for loss_kind in ("soft_bce", "cross_entropy"):
        m = TaskModel(backbone("toy-uniter", vocab), spec("classify", loss_kind), labels)
        loss = m.loss(exs, store)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert m.head.mlp.net[0].weight.grad is not None
        assert m.backbone.prunable_parameters()[0][1].grad is not None
        m.eval()  # no dropout: the loss can be recomputed by hand from the logits
        with torch.no_grad():
            logits = m._classify_logits(m.batcher(store)(exs)).float()
            got = m.loss(exs, store)
        if loss_kind == "soft_bce":  # the tasks' names, as VQA declares it: soft targets, not the top answer
            target = torch.tensor([[0.0, 0.0, 0.0]] * 4)
            target[1, 0], target[1, 2], target[3, 0], target[3, 2] = 1.0, 0.3, 1.0, 0.3
            target[0, 1] = target[2, 1] = 0.9  # 'oov' is outside the label list: no target
            want = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 4
        else:
            want = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0, 1, 0]))
        assert torch.allclose(got, want, atol=1e-5)
        m.train()
    # soft-BCE heads start every answer at probability 1/L (prior bias), cross-entropy heads at 0 bias
    soft = TaskModel(backbone("toy-uniter", vocab), spec("classify", "soft_bce"), labels)
    assert torch.allclose(torch.sigmoid(soft.head.mlp.net[-1].bias), torch.full((3,), 1 / 3))
    ce = TaskModel(backbone("toy-uniter", vocab), spec("classify", "cross_entropy"), labels)
    assert ce.head.mlp.net[-1].bias.abs().max() < 1.0
    with pytest.raises(ConfigError, match="loss 'bce' is not a classify loss"):
        TaskModel(m.backbone, spec("classify", "bce"), labels).loss(exs, store)
    pred = m.predict(exs, store)
    assert set(pred) == {"0", "1", "2", "3"} and set(pred.values()) <= set(labels)
    assert m.training  # predict restores the training mode
    with pytest.raises(DataError, match="label 'maybe' is not in the task's label list"):
        m.loss([Example("x", ("img0",), ("a",), {"maybe": 1.0})], store)
    with pytest.raises(ConfigError, match="needs its label list"):
        TaskModel(m.backbone, spec("classify"), None)


def test_classify_learns_a_tiny_task(vocab):
    """A few optimiser steps fit 4 examples: the loss goes down and predictions match."""
    store = RegionStore()
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],), {("yes" if i % 2 else "no"): 1.0}) for i in range(4)]
    m = TaskModel(backbone("toy-uniter", vocab), spec("classify"), ["yes", "no"])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = m.loss(exs, store)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first * 0.5
    assert m.predict(exs, store) == {str(i): ("yes" if i % 2 else "no") for i in range(4)}


def test_nlvr2_pair_head_uses_both_images(vocab):
    store = RegionStore()
    m = TaskModel(backbone("toy-lxmert", vocab), spec("classify", num_images=2), ["True", "False"])
    ex = [Example("a", ("img0", "img1"), (TEXTS[0],), {"True": 1.0}),
          Example("b", ("img2", "img3"), (TEXTS[1],), {"False": 1.0})]
    m.loss(ex, store).backward()
    assert m.head.mlp.net[0].in_features == 2 * m.backbone.hidden_size
    m.eval()
    with torch.no_grad():
        a = m._classify_logits(m.batcher(store)(ex[:1]))
        b = m._classify_logits(m.batcher(store, targets=False)([Example("a", ("img0", "img4"), (TEXTS[0],))]))
    assert not torch.allclose(a, b)  # the second image matters


def test_region_head_softmax_over_real_regions_and_predicts_boxes(vocab):
    store = RegionStore()
    m = TaskModel(backbone("toy-uniter", vocab), spec("region"))
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],), 2) for i in range(4)]
    m.loss(exs, store).backward()
    logits, mask = m._region_logits(m.batcher(store)(exs))
    probs = logits.detach().softmax(-1)
    assert float(probs[~mask].sum()) == 0.0 and torch.allclose(probs.sum(-1), torch.ones(4))
    pred = m.predict(exs, store)
    for ex in exs:
        box = pred[ex.uid]
        assert isinstance(box, tuple) and len(box) == 4
        assert any(torch.allclose(torch.tensor(box), b) for b in store.get(ex.image_ids[0]).boxes)
    with pytest.raises(DataError, match="target region index"):
        m.loss([Example("z", ("img0",), ("a",), 99)], store)
    with pytest.raises(ConfigError, match="takes pixels"):
        TaskModel(backbone("toy-vilt", vocab), spec("region"))


def test_itm_loss_with_hard_negatives_and_retrieval_scores(vocab):
    store = RegionStore()
    m = TaskModel(backbone("toy-uniter", vocab), spec("itm"), hard_pool=2)
    # two captions share img0: they are never each other's negatives
    exs = [Example("0", ("img0",), (TEXTS[0],)), Example("1", ("img0",), (TEXTS[1],)),
           Example("2", ("img1",), (TEXTS[2],)), Example("3", ("img2",), (TEXTS[3],))]
    loss = m.loss(exs, store)
    assert torch.isfinite(loss)
    loss.backward()
    store.reads = 0
    scores = m.score(TEXTS, ["img0", "img1", "img2"], store, batch_size=5)
    assert scores.shape == (4, 3) and store.reads == 3
    with torch.no_grad():
        m.eval()
        direct = m.head(m.backbone.encode([TEXTS[3]], [store.get("img1")]).pooled)
    assert torch.allclose(scores[3, 1], direct[0], atol=1e-5)
    with pytest.raises(ConfigError, match="use TaskModel.score"):
        m.predict(exs, store)


def test_choice_head_on_vilt(vocab):
    store = PixelStore()
    m = TaskModel(backbone("toy-vilt", vocab), spec("choice"))
    exs = [Example(str(i), (f"img{i}",), tuple(f"{TEXTS[i]} {w}" for w in WORDS[:8]), (i % 4, (i + 1) % 4))
           for i in range(2)]
    m.loss(exs, store).backward()
    pred = m.predict(exs, store)
    assert all(isinstance(a, int) and isinstance(r, int) and 0 <= a < 4 and 0 <= r < 4 for a, r in pred.values())


@pytest.mark.parametrize("preset", ["toy-uniter", "toy-lxmert", "toy-vilt"])
def test_pretrain_objectives(preset, vocab):
    store = PixelStore() if preset == "toy-vilt" else RegionStore()
    m = PretrainModel(backbone(preset, vocab))
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],)) for i in range(4)]
    torch.manual_seed(0)
    out = m.loss(exs, store, {"mlm": 2.0, "itm": 1.0, "mrm": 1.0}, mask_prob=0.15)
    expected = {"mlm", "itm"} | ({"mrm"} if preset != "toy-vilt" else set())
    assert set(out) == expected
    sum(out.values()).backward()
    assert all(torch.isfinite(v) for v in out.values())
    # the MLM decoder is the word-embedding matrix itself: it receives the MLM gradient
    assert m.backbone.word_embeddings().weight.grad is not None
    assert not any("word_embeddings" in k for k in m.heads.state_dict())
    assert all(n.startswith(("backbone.", "heads.")) for n, _ in m.named_parameters())
    with pytest.raises(ConfigError, match="unknown objective 'mlmm'"):
        m.loss(exs, store, {"mlmm": 1.0})


def test_pretrain_weights_scale_the_losses(vocab):
    store = RegionStore()
    m = PretrainModel(backbone("toy-uniter", vocab)).eval()
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],)) for i in range(4)]
    torch.manual_seed(3)
    a = m.loss(exs, store, {"mrm": 1.0})["mrm"]
    torch.manual_seed(3)
    b = m.loss(exs, store, {"mrm": 3.0})["mrm"]
    assert torch.allclose(3 * a, b)


def test_sampled_loss_draws_one_objective_per_batch_by_ratio(vocab):
    from bench.backbones.pretrain_model import draw_objective

    torch.manual_seed(0)
    draws = Counter(draw_objective({"itm": 2.0, "mlm": 1.0, "mrm": 1.0}) for _ in range(4000))
    assert abs(draws["itm"] / 4000 - 0.5) < 0.03 and abs(draws["mlm"] / 4000 - 0.25) < 0.03
    store = RegionStore()
    m = PretrainModel(backbone("toy-uniter", vocab)).eval()
    exs = [Example(str(i), (f"img{i}",), (TEXTS[i],)) for i in range(4)]
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = m.sampled_loss(exs, store, {"itm": 2.0, "mlm": 1.0, "mrm": 1.0})
        assert len(out) == 1 and torch.isfinite(next(iter(out.values())))
        seen |= set(out)
    assert seen == {"itm", "mlm", "mrm"}
    # pixel backbones skip MRM; unknown names fail as in loss()
    vilt = PretrainModel(backbone("toy-vilt", vocab))
    torch.manual_seed(0)
    assert {k for s in range(8) for k in vilt.sampled_loss(exs, PixelStore(), {"mrm": 5.0, "itm": 1.0})} == {"itm"}
    with pytest.raises(ConfigError, match="unknown objective 'mlmm'"):
        m.sampled_loss(exs, store, {"mlmm": 1.0})
    with pytest.raises(ConfigError, match="no objective with a positive weight"):
        vilt.sampled_loss(exs, PixelStore(), {"mrm": 1.0})


def test_itm_margin_ranking_loss_with_hard_negatives(vocab):
    """Opt-in mining (UNITER's -hn configs): hinge on sigmoid scores of the hardest negative image of each
    text and the hardest negative text of each image; the margin loss is the real families', BCE toy's."""
    store = RegionStore()
    bb = backbone("toy-uniter", vocab)
    assert TaskModel(bb, spec("itm")).itm_loss == "bce"
    bb.family = "uniter"
    m = TaskModel(bb, spec("itm"), margin=0.2, hard_negatives=8)
    assert m.itm_loss == "margin"
    exs = [Example(str(i), (f"img{i % 3}",), (TEXTS[i],)) for i in range(4)]
    torch.manual_seed(0)
    loss = m.loss(exs, store)
    loss.backward()
    with torch.no_grad():
        m.eval()
        s = m.score(TEXTS[:4], ["img0", "img1", "img2"], store)  # [text, image]
    img = [i % 3 for i in range(4)]
    pos = torch.stack([s[t, img[t]] for t in range(4)])
    neg_img = torch.stack([max(s[t, j] for j in range(3) if j != img[t]) for t in range(4)])
    neg_txt = torch.stack([max(s[c, img[i]] for c in range(4) if img[c] != img[i]) for i in range(4)])
    pos, neg_img, neg_txt = torch.sigmoid(pos), torch.sigmoid(neg_img), torch.sigmoid(neg_txt)
    expected = (torch.relu(0.2 + neg_img - pos).mean() + torch.relu(0.2 + neg_txt - pos).mean()) / 2
    assert torch.allclose(loss.detach(), expected, atol=1e-5)


def test_itm_margin_loss_as_released_samples_one_negative_each_way_on_sigmoid_scores(vocab):
    """UNITER's released default (negative_size 1, model/itm.py): per text one sampled negative image and
    one sampled negative caption, hinge on sigmoid scores; the rank head starts from the ITM head's match row."""
    store = RegionStore()
    bb = backbone("toy-uniter", vocab)
    bb.family = "uniter"
    h = bb.hidden_size
    itm = torch.randn(2, h), torch.randn(2)
    from bench.backbones.pretrained_heads import head_state

    bb.pretrained_heads = {k: v for k, v in head_state("uniter", {"itm_output.weight": itm[0],
                                                                  "itm_output.bias": itm[1]}).items()}
    m = TaskModel(bb, spec("itm"), margin=0.2)
    assert m.hard_negatives == 0
    assert torch.equal(m.head.proj.weight.detach(), itm[0][1:]) and torch.equal(m.head.proj.bias.detach(), itm[1][1:])
    exs = [Example(str(i), (f"img{i % 3}",), (TEXTS[i],)) for i in range(4)]
    img = [i % 3 for i in range(4)]
    calls = []
    real = m._pair_scores

    def spy(batch, rows_t=None, rows_i=None):
        calls.append((list(rows_t), list(rows_i)))
        return real(batch, rows_t, rows_i)

    m._pair_scores = spy
    torch.manual_seed(0)
    loss = m.loss(exs, store)
    assert len(calls) == 1  # no forward without gradients: nothing is mined
    rows_t, rows_i = calls[0]
    assert len(rows_t) == 3 * 4  # positives, one negative image, one negative text each
    for t in range(4):
        assert (rows_t[t], rows_i[t]) == (t, t)
        assert rows_t[4 + t] == t and img[rows_i[4 + t]] != img[t]  # the text with another image
        assert rows_i[8 + t] == t and img[rows_t[8 + t]] != img[t]  # the image with another image's caption
    m._pair_scores = real
    with torch.no_grad():
        m.eval()
        s = torch.sigmoid(m.score(TEXTS[:4], ["img0", "img1", "img2"], store))
    pos = torch.stack([s[t, img[t]] for t in range(4)])
    neg_img = torch.stack([s[t, img[rows_i[4 + t]]] for t in range(4)])
    neg_txt = torch.stack([s[rows_t[8 + t], img[t]] for t in range(4)])
    expected = (torch.relu(0.2 + neg_img - pos).mean() + torch.relu(0.2 + neg_txt - pos).mean()) / 2
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
