"""Tokenizers: a BERT-style word-level tokenizer built from a world's vocab.txt, and loaders."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.core.errors import CheckpointError, ConfigError, DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_world_tokenizer(vocab_path: str | Path):
    """A PreTrainedTokenizerFast over the words of `vocab_path` (one token a line).

    WordLevel model, BERT normaliser (lower case) and pre-tokeniser (splits on whitespace and
    punctuation), [CLS] text [SEP] template. Missing special tokens are put first, so [PAD] is
    id 0 when the file does not list it.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    path = Path(vocab_path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: vocabulary file not found") from None
    words = [w.strip() for w in lines if w.strip()]
    if not words:
        raise DataError(f"{path}: empty vocabulary (expected one token a line)")
    tokens = [t for t in SPECIAL_TOKENS if t not in words] + words
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


def load_tokenizer(path_or_id: str | Path, online_ok: bool = False):
    """Load a fast tokenizer from a local directory (or, when `online_ok`, a hub id)."""
    from transformers import AutoTokenizer

    local = Path(path_or_id).exists()
    if not local and not online_ok:
        raise CheckpointError(f"tokenizer '{path_or_id}': no such local directory (hub ids need online access)")
    try:
        return AutoTokenizer.from_pretrained(str(path_or_id), local_files_only=local, use_fast=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"tokenizer '{path_or_id}': cannot load ({first})") from None


def tokenizer_identity(path: str | Path, field: str = "backbone.tokenizer") -> str:
    """Content hash of a local tokenizer directory (every file in it, by name and bytes), so a θ0 built
    with one vocabulary is never served for another; a missing directory is one line naming `field`."""
    directory = Path(path)
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if directory.is_dir() else []
    if not files:
        what = "is empty" if directory.is_dir() else "is not a directory"
        raise ConfigError(f"{field}: expected a local tokenizer directory (tokenizer.json or vocab.txt), "
                          f"found {str(path)!r}, which {what}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]
