"""The one training loop: pre-training, IMP rounds and fine-tuning all use `train`."""

from bench.training.evaluate import evaluate_task
from bench.training.loop import Callback, OnGrads, OnStep, Snapshot, TrainLog, TrainSettings, train

__all__ = ["TrainSettings", "TrainLog", "train", "evaluate_task", "Callback", "OnStep", "OnGrads", "Snapshot"]
