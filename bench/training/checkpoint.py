"""Mid-run checkpoints of one `train()` call, so that a pre-empted fine-tuning pair resumes where it was.

A `Checkpoint` is the hook `train(..., checkpoint=)` takes. Every `minutes` (checked when a log window
closes, so no loss of the window is pending) it stores, in its folder:

  step-<k>/weights.safetensors   the parameters that train, at step k
  step-<k>/state.pt              optimizer and scheduler state and RNG states (torch.save; read back with
                                 torch.load(weights_only=True): no pickled code)
  LATEST                         JSON naming step-<k>, the micro-batches drawn from the seeded stream so
                                 far and the loss history; written last

Every file is written atomically, LATEST last, and the previous step folder is removed only after LATEST
names the new one, so a kill -9 at any moment leaves a whole checkpoint (or none). `resume` puts weights,
optimizer, scheduler and RNG states back and redraws the batches already consumed from a fresh stream
(index lists of a seeded sampler: cheap), so the resumed run computes what the uninterrupted one would.
`clear()` removes the folder once the run is complete.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from bench.core.errors import RunFailed
from bench.core.io import atomic_write_bytes, atomic_write_json, read_json

LATEST = "LATEST"


class _Counted:
    """The batch stream, counting what was drawn (the data position a checkpoint stores)."""

    def __init__(self, batches: Iterator, drawn: int = 0):
        self.batches, self.drawn = batches, drawn

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.batches)
        self.drawn += 1
        return item


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoint:
    """Checkpoints of one training call in `directory`, every `minutes` of training (0 = never save; an
    existing checkpoint is still resumed). `key` names what is trained (a run id): a checkpoint with
    another key is not resumed."""

    def __init__(self, directory: str | Path, minutes: float, key: str = "", clock=time.monotonic):
        self.directory = Path(directory)
        self.every_s = float(minutes) * 60.0
        self.key = key
        self.clock = clock
        self.resumed_from = 0  # the step a resumed run started after (0: from the start)
        self._stream: _Counted | None = None
        self._last = clock()

    # ---- resume ------------------------------------------------------------------------------
    def _read(self, model: nn.Module, opt, steps: int) -> tuple[dict, dict, dict] | None:
        """(LATEST, weights, state) of a whole checkpoint that fits this model and run, else None (a
        checkpoint that does not fit is reported on stderr and ignored: the run starts over)."""
        latest_path = self.directory / LATEST
        if not latest_path.is_file():
            return None
        try:
            latest = read_json(latest_path)
            folder = self.directory / str(latest["dir"])
            weights = load_safetensors((folder / "weights.safetensors").read_bytes())
            state = torch.load(io.BytesIO((folder / "state.pt").read_bytes()), map_location="cpu",
                               weights_only=True)
            own = _trainable(model)
            problem = ("it is for another run" if latest.get("key") != self.key else
                       f"it is for {latest.get('steps')} steps, not {steps}" if latest.get("steps") != steps else
                       "its parameters differ" if set(weights) != set(own) or any(
                           weights[n].shape != p.shape for n, p in own.items()) else
                       "its optimizer state differs" if len(state["optimizer"]["param_groups"]) != len(opt.param_groups)
                       else "")
        except Exception as e:  # any unreadable checkpoint: start over, saying why
            problem = f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        if problem:
            print(f"ticketbench: warning: checkpoint {self.directory} not resumed: {problem}; starting over",
                  file=sys.stderr, flush=True)
            return None
        return latest, weights, state

    def resume(self, model: nn.Module, opt, sched, make_batches: Callable[[int], Iterator], history: list,
               steps: int) -> tuple[Iterator, int]:
        """Restore the last checkpoint, if any, into `model`, `opt`, `sched` and `history`; return the
        batch stream `make_batches(skip)` positioned after the batches already consumed (the sampler
        skips them unprepared), and the first step to run. Call it before the first step (RNG states
        are restored last)."""
        found = self._read(model, opt, steps)
        if found is None:
            self._stream = _Counted(make_batches(0))
            return self._stream, 1
        latest, weights, state = found
        try:
            with torch.no_grad():
                for name, p in _trainable(model).items():
                    p.copy_(weights[name].to(p.device, p.dtype))
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            drawn = int(latest["batches"])
            batches = make_batches(drawn)  # the seeded stream after its consumed batches
            _set_rng_state(state["rng"])
        except Exception as e:  # the model is half restored: this run cannot go on
            raise RunFailed(f"checkpoint {self.directory} could not be restored ({type(e).__name__}); "
                            "delete it to start the run over") from None
        history[:] = latest["history"]
        self.resumed_from = int(latest["step"])
        self._stream = _Counted(batches, drawn)
        self._last = self.clock()
        return self._stream, self.resumed_from + 1

    # ---- save --------------------------------------------------------------------------------
    def due(self) -> bool:
        return self.every_s > 0 and self.clock() - self._last >= self.every_s

    def save(self, step: int, steps: int, model: nn.Module, opt, sched, history: list) -> None:
        """Store the state after `step` (the stream must have come from `resume`)."""
        folder = self.directory / f"step-{step:08d}"
        weights = {n: p.detach().to("cpu").contiguous() for n, p in _trainable(model).items()}
        atomic_write_bytes(folder / "weights.safetensors", save_safetensors(weights))
        buf = io.BytesIO()
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state()}, buf)
        atomic_write_bytes(folder / "state.pt", buf.getvalue())
        atomic_write_json(self.directory / LATEST, {
            "key": self.key, "step": step, "steps": steps, "dir": folder.name,
            "batches": self._stream.drawn if self._stream is not None else 0, "history": history})
        for old in self.directory.glob("step-*"):  # LATEST has moved on: older folders are garbage
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
        self._last = self.clock()

    def maybe_save(self, step: int, steps: int, model: nn.Module, opt, sched, history: list) -> None:
        if step < steps and self.due():
            self.save(step, steps, model, opt, sched, history)

    def clear(self) -> None:
        """Remove the checkpoint (the run is complete)."""
        shutil.rmtree(self.directory, ignore_errors=True)
