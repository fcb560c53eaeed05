"""Backbones (UNITER, LXMERT, ViLT; BERT for the text study), their heads, task and pre-training models, and presets."""

from bench.backbones.base import Backbone, Encoding, resolve_device
from bench.backbones.checkpoint import load_pretrained, read_state_dict
from bench.backbones.convert_uniter import convert_uniter_state_dict
from bench.backbones.presets import PRESETS, create_backbone, describe_presets, load_backbone, register_preset
from bench.backbones.pretrain_model import PretrainModel
from bench.backbones.task_model import TaskModel
from bench.backbones.text_model import MLMModel, TextTaskModel
from bench.backbones.tokenizer import build_world_tokenizer, tokenizer_identity

__all__ = [
    "Backbone", "Encoding", "MLMModel", "PRESETS", "PretrainModel", "TaskModel", "TextTaskModel", "build_world_tokenizer",
    "convert_uniter_state_dict", "create_backbone", "describe_presets", "load_backbone",
    "load_pretrained", "read_state_dict", "register_preset", "resolve_device", "task_model", "tokenizer_identity",
]


def task_model(backbone: Backbone, spec, labels=None, hard_negatives: int = 0):
    """The task model of a backbone: TaskModel (vision and language) or TextTaskModel (a text-only backbone;
    retrieval's hard negatives do not apply to it)."""
    if backbone.image_input == "none":
        return TextTaskModel(backbone, spec, labels)
    return TaskModel(backbone, spec, labels, hard_negatives=hard_negatives)
