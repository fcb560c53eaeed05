"""Real checkpoints keep their pre-training heads: UNITER's MLM/ITM/MRFR/MRC and LXMERT's heads start
`PretrainModel` from the checkpoint (random weights in the real key layouts), through θ0's save/load."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_backbones_checkpoints import FEAT, INTER, TINY, H, official_uniter_state, tokdir  # noqa: F401
from test_backbones_models import regions

from bench.backbones import PretrainModel, create_backbone, load_backbone
from bench.backbones.tokenizer import build_world_tokenizer


def _uniter(tokdir, tmp_path):  # noqa: F811
    vocab = len(build_world_tokenizer(tokdir / "vocab.txt"))
    official = official_uniter_state(vocab, old_layer_norm_names=True)
    torch.save({f"module.{k}": v for k, v in official.items()}, tmp_path / "uniter-base.pt")
    bb = create_backbone("uniter-base", checkpoint=tmp_path / "uniter-base.pt", tokenizer=tokdir / "tokenizer", **TINY)
    return official, bb


def _uniter_heads_match(model: PretrainModel, official: dict) -> None:
    """Our heads compute what UNITER's heads compute on the same hidden states."""
    torch.manual_seed(1)
    x = torch.randn(5, H)
    with torch.no_grad():
        # MLM: BERT transform (dense, GELU, LayerNorm), decoder tied to the word embeddings.
        t = F.layer_norm(F.gelu(F.linear(x, official["cls.predictions.transform.dense.weight"],
                                         official["cls.predictions.transform.dense.bias"])), (H,),
                         official["cls.predictions.transform.LayerNorm.gamma"],
                         official["cls.predictions.transform.LayerNorm.beta"], eps=1e-12)
        mlm = t @ official["cls.predictions.decoder.weight"].t() + official["cls.predictions.bias"]
        assert torch.allclose(model.heads["mlm"](x), mlm, atol=1e-4)
        # ITM: softmax over (no, yes) of itm_output == sigmoid of our single match logit.
        yes = F.softmax(F.linear(x, official["itm_output.weight"], official["itm_output.bias"]), -1)[:, 1]
        assert torch.allclose(torch.sigmoid(model.heads["itm"](x)), yes, atol=1e-5)
        # MRFR: net (Linear, GELU, LayerNorm) then F.linear(hidden, img_linear.weight.t(), bias).
        h = F.layer_norm(F.gelu(F.linear(x, official["feat_regress.net.0.weight"], official["feat_regress.net.0.bias"])),
                         (H,), official["feat_regress.net.2.gamma"], official["feat_regress.net.2.beta"], eps=1e-12)
        mrm = F.linear(h, official["feat_regress.weight"].t(), official["feat_regress.bias"])
        assert torch.allclose(model.heads["mrm"](x), mrm, atol=1e-4)
        # MRC: region_classifier.net = Linear, GELU, LayerNorm, Linear to the detector's 1,601 classes.
        h = F.layer_norm(F.gelu(F.linear(x, official["region_classifier.net.0.weight"],
                                         official["region_classifier.net.0.bias"])),
                         (H,), official["region_classifier.net.2.gamma"], official["region_classifier.net.2.beta"], eps=1e-12)
        mrc = F.linear(h, official["region_classifier.net.3.weight"], official["region_classifier.net.3.bias"])
        assert torch.allclose(model.heads["mrc"](x), mrc, atol=1e-4)


def test_uniter_checkpoint_heads_are_loaded_not_reinitialised(tokdir, tmp_path):  # noqa: F811
    official, bb = _uniter(tokdir, tmp_path)
    model = PretrainModel(bb)
    assert model.loaded_heads == ("mlm", "itm", "mrm", "mrc")
    _uniter_heads_match(model, official)
    # θ0 is the saved backbone: the heads travel with it.
    bb.save(tmp_path / "theta0")
    again = PretrainModel(load_backbone(tmp_path / "theta0"))
    assert again.loaded_heads == ("mlm", "itm", "mrm", "mrc")
    _uniter_heads_match(again, official)
    loss = again.loss([_example()], _Store(), {"mlm": 1.0, "itm": 1.0, "mrm": 1.0, "mrc": 1.0})
    sum(loss.values()).backward()
    assert again.heads["mrc"].mlp.net[0].weight.grad.abs().sum() > 0


def test_a_checkpoint_without_heads_keeps_fresh_ones(tokdir, tmp_path):  # noqa: F811
    official, _ = _uniter(tokdir, tmp_path)
    bare = {k: v for k, v in official.items() if k.startswith("uniter.")}
    torch.save(bare, tmp_path / "bare.pt")
    bb = create_backbone("uniter-base", checkpoint=tmp_path / "bare.pt", tokenizer=tokdir / "tokenizer", **TINY)
    assert bb.pretrained_heads == {} and PretrainModel(bb).loaded_heads == ()
    bb.save(tmp_path / "theta0")
    assert not (tmp_path / "theta0" / "heads.safetensors").exists()


def test_lxmert_pretraining_heads_are_loaded(tokdir, tmp_path):  # noqa: F811
    from transformers import LxmertConfig, LxmertForPreTraining

    tok = build_world_tokenizer(tokdir / "vocab.txt")
    cfg = LxmertConfig(vocab_size=len(tok), hidden_size=H, num_attention_heads=4, intermediate_size=INTER,
                       l_layers=1, x_layers=1, r_layers=1, visual_feat_dim=FEAT, visual_pos_dim=4,
                       num_qa_labels=5, num_object_labels=7, num_attr_labels=3)
    torch.manual_seed(0)
    ref = LxmertForPreTraining(cfg).eval()
    ref.save_pretrained(str(tmp_path / "lxmert"))
    tok.save_pretrained(str(tmp_path / "lxmert"))
    model = PretrainModel(create_backbone("lxmert-base", checkpoint=tmp_path / "lxmert")).eval()
    assert model.loaded_heads == ("mlm", "itm", "mrm")
    x = torch.randn(4, H)
    with torch.no_grad():
        assert torch.allclose(model.heads["mlm"](x), ref.cls.predictions(x), atol=1e-4)
        yes = F.softmax(ref.cls.seq_relationship(x), -1)[:, 1]
        assert torch.allclose(torch.sigmoid(model.heads["itm"](x)), yes, atol=1e-5)
        feat = ref.obj_predict_head.decoder_dict["feat"](ref.obj_predict_head.transform(x))
        assert torch.allclose(model.heads["mrm"](x), feat, atol=1e-4)


class _Store:
    """Region features with the detector's soft labels (UNITER's img_db records carry them)."""

    def __init__(self, classes: int = 1601):
        self.classes = classes

    def get(self, image_id):
        r = regions(4, seed=int(image_id[-1]))
        r.soft_labels = torch.softmax(torch.randn(4, self.classes, generator=torch.Generator().manual_seed(3)), -1).half()
        return r


def test_mrc_kl_is_unilateral_kl_to_the_soft_labels(tokdir, tmp_path):  # noqa: F811
    """MRC-kl = mean over masked regions and classes of KL(soft labels || softmax(logits)), as UNITER;
    a store without soft labels, or with another class count, is one line naming the image."""
    import pytest

    from bench.core.errors import DataError

    _, bb = _uniter(tokdir, tmp_path)
    model = PretrainModel(bb)
    torch.manual_seed(0)
    loss = model.loss([_example()], _Store(), {"mrc": 1.0})["mrc"]
    assert torch.isfinite(loss) and loss > 0
    # The same value by hand: the masking draws the same regions from the same seed.
    torch.manual_seed(0)
    batch = model.batcher(_Store(), soft_labels=True)([_example()])
    _, chosen, states = model._masked_regions(batch, 0.15)
    target = _Store().get("img0").soft_labels.float()[chosen[0, :4]]
    log_p = F.log_softmax(model.heads["mrc"](states).float(), -1)
    by_hand = (target * (target.log() - log_p)).mean()
    assert torch.allclose(loss, by_hand, atol=1e-5)
    with pytest.raises(DataError, match="image img0: MRC-kl needs soft_labels over 1601 classes .* found 7 classes"):
        model.loss([_example()], _Store(classes=7), {"mrc": 1.0})


def _example():
    from bench.tasks.base import Example

    return Example("c0", ("img0",), ("a red cube left of the sphere",), None)


def test_mrc_needs_a_region_classifier_before_anything_runs():
    """A toy preset has no region classifier (toyland has no detector soft labels): the plan refuses
    'mrc' with one line; UNITER's released mix (itm:mlm:mrfr:mrckl = 2:2:1:1) plans for uniter-base."""
    import pytest

    from bench.config import load_config
    from bench.core.errors import ConfigError
    from bench.plan import build_plan

    with pytest.raises(ConfigError, match="'mrc' \\(MRC-kl\\) needs a region classifier .* preset 'toy-uniter'"):
        build_plan(load_config("smoke", ["pretrain.objectives=itm:2,mlm:2,mrm:1,mrc:1"]))
    plan = build_plan(load_config("paper-uniter"))
    assert plan.imp_objectives == (("itm", 2.0), ("mlm", 2.0), ("mrm", 1.0), ("mrc", 1.0))
