"""Backbones (UNITER, LXMERT, ViLT), their heads, task and pre-training models, and presets."""

from bench.backbones.base import Backbone, Encoding, resolve_device
from bench.backbones.checkpoint import load_pretrained, read_state_dict
from bench.backbones.convert_uniter import convert_uniter_state_dict
from bench.backbones.presets import PRESETS, create_backbone, describe_presets, load_backbone, register_preset
from bench.backbones.pretrain_model import PretrainModel
from bench.backbones.task_model import TaskModel
from bench.backbones.tokenizer import build_world_tokenizer, tokenizer_identity

__all__ = [
    "Backbone", "Encoding", "PRESETS", "PretrainModel", "TaskModel", "build_world_tokenizer",
    "convert_uniter_state_dict", "create_backbone", "describe_presets", "load_backbone",
    "load_pretrained", "read_state_dict", "register_preset", "resolve_device", "tokenizer_identity",
]
