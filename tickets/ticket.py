"""The ticket artifact: bit-packed binary masks over a backbone's prunable weights plus metadata.

File format (one `.safetensors`, no pickle): one uint8 tensor per mask holding
`numpy.packbits(mask.flatten())` (big bit order, zero padding), and the safetensors header
metadata {"format": "ticketbench-ticket", "format_version": "1", "ticket": <JSON metadata>}.
Loading validates the format version, tensor set and sizes, padding bits, the content hash and
every stored sparsity against the masks.

Late rewinding (IMP with rewind step k > 0): the ticket also names the weights its kept entries
start from, θk of the prunable tensors, stored beside it as `rewind-<hash>.safetensors` (one file
per search: every round rewinds to the same θk) and recorded in the metadata as
`rewind: {file, hash, step}`. The content hash then covers that hash too, so a run's id changes
with the starting weights; `Ticket.apply` loads and verifies the file and starts from m ⊙ θk.

Pattern: `pattern` in the metadata ("unstructured", or N:M such as "2:4"; tickets written before it
existed are unstructured); saving and loading an N:M ticket check that every group of M consecutive
inputs of every row keeps exactly N.

Reconstructed weights (SparseGPT): a method that changes the kept weights as well as the mask stores
them beside the ticket as `reconstructed-<hash>.safetensors`, named in the metadata as
`reconstructed: {file, hash}`. They are *not* covered by the content hash and `apply` never uses
them: the ticket rewinds to θ0 like any other; they are the "without fine-tuning" model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.core import __version__
from bench.core.errors import TicketError
from bench.core.io import atomic_write_bytes, read_bounded
from tickets.fingerprint import fingerprint_of
from tickets.magnitude import check_sparsity
from tickets.patterns import UNSTRUCTURED, check_pattern
from tickets.select import select_prunable

FORMAT = "ticketbench-ticket"
FORMAT_VERSION = 1
MAX_TICKET_BYTES = 8 << 30  # a bool mask per weight: a billion-parameter backbone's ticket is ~1 GB
WEIGHT_TRANSFORMS = ("pretrained", "reinit", "shuffle")
REINIT_STD = 0.02
# How `reinit` draws fresh weights (metadata `weights_init`): BERT's N(0, std), or PyTorch's
# nn.Linear default U(±1/sqrt(fan_in)) — the toy presets' own initialisation (`tiny_init`).
REINIT_INITS = ("normal", "fan_in_uniform")
# Fields a valid ticket's metadata always has (the derived ones are recomputed from the masks).
REQUIRED = (
    "format_version", "backbone", "fingerprint", "source", "method", "hparams", "target_sparsity",
    "sparsity", "pruned", "total", "round", "seed", "weights", "include", "exclude", "ticketbench",
    "order", "shapes", "content_hash",
)


def reinit_tensor(shape, meta: dict, gen: torch.Generator) -> Tensor:
    """Fresh float32 weights of `shape` drawn as the ticket's metadata records."""
    init = meta.get("weights_init", "normal")
    if init == "fan_in_uniform":
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        return torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen)
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, float(meta.get("weights_std", REINIT_STD)),
                                                           generator=gen)


def _pack(mask: Tensor) -> np.ndarray:
    return np.packbits(mask.detach().to("cpu", torch.bool).reshape(-1).numpy())


def masks_content_hash(masks: dict[str, Tensor], rewind_hash: str | None = None) -> str:
    """sha256 over (name, shape, packed bits) of every mask, in order (16 hex digits); with late
    rewinding, also over the rewind weights' hash (a ticket without one keeps its old hash)."""
    h = hashlib.sha256()
    for name, m in masks.items():
        h.update(json.dumps([name, list(m.shape)]).encode())
        h.update(_pack(m).tobytes())
    if rewind_hash:
        h.update(f"rewind:{rewind_hash}".encode())
    return h.hexdigest()[:16]


def weights_hash(weights: dict[str, Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in name order (16 hex digits)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _rewind_hash(meta: dict) -> str | None:
    r = meta.get("rewind")
    return r.get("hash") if isinstance(r, dict) else None


def _sparsity_stats(masks: dict[str, Tensor]) -> tuple[int, int, dict[str, float]]:
    pruned, total, per = 0, 0, {}
    for name, m in masks.items():
        n = m.numel()
        p = n - int(m.count_nonzero())  # count_nonzero: ~6x faster than summing a bool tensor at full size
        pruned, total = pruned + p, total + n
        per[name] = p / n if n else 0.0
    return pruned, total, per


def _check_masks(masks: dict[str, Tensor]) -> dict[str, Tensor]:
    if not isinstance(masks, dict) or not masks:
        raise TicketError("a ticket needs a non-empty dict of masks")
    out = {}
    for name, m in masks.items():
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            raise TicketError(f"mask '{name}': expected a bool tensor, found {getattr(m, 'dtype', type(m).__name__)}")
        out[str(name)] = m.detach().to("cpu")
    return out


@dataclass
class Ticket:
    """Binary masks (name → bool tensor, True = kept) over a backbone's prunable weights + metadata."""

    masks: dict[str, Tensor]
    metadata: dict = field(default_factory=dict)
    # Late rewinding: θk of the prunable tensors, in memory until saved beside the ticket file.
    rewind_weights: dict[str, Tensor] | None = field(default=None, repr=False, compare=False)
    path: Path | None = field(default=None, repr=False, compare=False)  # the file it was loaded from
    # SparseGPT's reconstructed prunable weights, in memory until saved beside the ticket file.
    reconstructed_weights: dict[str, Tensor] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.masks = _check_masks(self.masks)
        if self.rewind_weights is not None:
            self.rewind_weights = self._check_rewind(self.rewind_weights)
        if self.reconstructed_weights is not None:
            self.reconstructed_weights = self._check_rewind(self.reconstructed_weights, "reconstructed weights")
        self._refresh()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        masks: dict[str, Tensor],
        *,
        backbone: str,
        fingerprint: str,
        source: str,
        method: str,
        source_task: str = "",
        hparams: dict | None = None,
        target_sparsity: float,
        round: int | None = None,  # noqa: A002 - the IMP round
        seed: int = 0,
        weights: str = "pretrained",
        weights_seed: int | None = None,
        weights_std: float | None = None,
        weights_init: str | None = None,
        include=(),
        exclude=(),
        model_numel: int | None = None,
        extra: dict | None = None,
        rewind_weights: dict[str, Tensor] | None = None,
        rewind_step: int = 0,
        pattern: str = UNSTRUCTURED,
        reconstructed_weights: dict[str, Tensor] | None = None,
    ) -> "Ticket":
        """A ticket with complete metadata (the derived fields are computed from the masks).

        `rewind_weights` (late rewinding): the prunable weights at step `rewind_step` of the first
        round's training, which the kept weights start from instead of θ0."""
        meta = {
            "backbone": backbone,
            "fingerprint": fingerprint,
            "source": source,
            "source_task": source_task,
            "method": method,
            "hparams": dict(hparams or {}),
            "target_sparsity": check_sparsity(target_sparsity, "target sparsity"),
            "round": round,
            "seed": int(seed),
            "weights": weights,
            "weights_seed": weights_seed,
            "include": list(include),
            "exclude": list(exclude),
            "model_numel": model_numel,
            "extra": dict(extra or {}),
            "pattern": str(pattern),
        }
        if weights_std is not None:
            meta["weights_std"] = float(weights_std)
        if weights_init is not None:
            meta["weights_init"] = str(weights_init)
        if rewind_weights is not None:
            meta["rewind"] = {"step": int(rewind_step)}
        return cls(masks, meta, rewind_weights=rewind_weights, reconstructed_weights=reconstructed_weights)

    def _check_rewind(self, weights: dict[str, Tensor], what: str = "rewind weights") -> dict[str, Tensor]:
        bad = [n for n, m in self.masks.items() if n not in weights or tuple(weights[n].shape) != tuple(m.shape)]
        if bad or set(weights) != set(self.masks):
            name = bad[0] if bad else sorted(set(weights) - set(self.masks))[0]
            raise TicketError(f"{what}: '{name}' does not match the ticket's masks (names and shapes)")
        return {n: weights[n].detach().to("cpu").clone() for n in self.masks}

    def _refresh(self) -> None:
        """Recompute the fields derived from the masks so metadata never disagrees with them."""
        pruned, total, per = _sparsity_stats(self.masks)
        meta = self.metadata
        model_numel = meta.get("model_numel")
        meta.update(
            format_version=FORMAT_VERSION,
            pruned=pruned,
            total=total,
            sparsity={
                "prunable": pruned / total if total else 0.0,
                "model": pruned / model_numel if model_numel else None,
                "per_tensor": per,
            },
            order=list(self.masks),
            shapes={n: list(m.shape) for n, m in self.masks.items()},
        )
        if self.rewind_weights is not None:
            h = weights_hash(self.rewind_weights)
            meta["rewind"] = {**(meta.get("rewind") or {}), "hash": h, "file": f"rewind-{h}.safetensors"}
        if self.reconstructed_weights is not None:
            h = weights_hash(self.reconstructed_weights)
            meta["reconstructed"] = {"hash": h, "file": f"reconstructed-{h}.safetensors"}
        meta["content_hash"] = masks_content_hash(self.masks, _rewind_hash(meta))
        meta.setdefault("pattern", UNSTRUCTURED)
        meta.setdefault("ticketbench", __version__)  # the version that found it, kept on load
        meta.setdefault("weights", "pretrained")
        meta.setdefault("include", [])
        meta.setdefault("exclude", [])
        meta.setdefault("round", None)
        meta.setdefault("seed", 0)
        meta.setdefault("hparams", {})
        for key in ("backbone", "fingerprint", "source", "method"):
            meta.setdefault(key, "")
        meta.setdefault("target_sparsity", round(pruned / total, 6) if total else 0.0)

    # -- properties -----------------------------------------------------------------------------
    @property
    def sparsity(self) -> float:
        """Achieved sparsity over the prunable set (pruned / total)."""
        return self.metadata["sparsity"]["prunable"]

    @property
    def content_hash(self) -> str:
        return self.metadata["content_hash"]

    @property
    def fingerprint(self) -> str:
        return self.metadata["fingerprint"]

    @property
    def backbone(self) -> str:
        return self.metadata["backbone"]

    @property
    def per_tensor_sparsity(self) -> dict[str, float]:
        return self.metadata["sparsity"]["per_tensor"]

    # -- file I/O -------------------------------------------------------------------------------
    def check_consistent(self, where: str = "ticket", reference: dict | None = None) -> None:
        """The masks' names and shapes must be the prunable set the recorded fingerprint names
        (`reference`, name → parameter, lets the message name the mismatching mask)."""
        found = fingerprint_of(self.masks.items())
        if found != self.fingerprint:
            ref = reference or {}
            bad = next((n for n, m in self.masks.items() if n in ref and ref[n].shape != m.shape), None)
            detail = (f"mask '{bad}' has shape {tuple(self.masks[bad].shape)}, the parameter"
                      f" {tuple(ref[bad].shape)}; " if bad else "")
            raise TicketError(
                f"{where}: mask shape mismatch: {detail}the masks' names and shapes (fingerprint {found}) are not"
                f" those of backbone '{self.backbone}' (fingerprint {self.fingerprint})"
            )

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        self._refresh()
        self.check_consistent()
        check_pattern(self.masks, self.metadata["pattern"], f"ticket {self.metadata.get('source', '')}")
        tensors = {n: torch.from_numpy(_pack(m)) for n, m in self.masks.items()}
        header = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                  "ticket": json.dumps(self.metadata, sort_keys=True, default=_json_default)}
        return save(tensors, metadata=header)

    def save(self, path) -> Path:
        """Write the ticket atomically to `path` (a .safetensors file), and its rewind weights
        beside it first (content-addressed: rounds sharing θk share one file)."""
        path = Path(path)
        data = self.to_bytes()
        for weights, key in ((self.rewind_weights, "rewind"), (self.reconstructed_weights, "reconstructed")):
            if weights is not None:
                from safetensors.torch import save

                target = path.parent / self.metadata[key]["file"]
                if not target.exists():
                    atomic_write_bytes(target, save({n: t.contiguous() for n, t in weights.items()}))
        out = atomic_write_bytes(path, data)
        self.path = out
        return out

    def starting_weights(self) -> dict[str, Tensor] | None:
        """The weights the kept entries start from when they are not θ0's: the late-rewinding θk
        (read from beside the ticket file and checked against the recorded hash), else None."""
        if not isinstance(self.metadata.get("rewind"), dict):
            return None
        if self.rewind_weights is None:
            self.rewind_weights = self._read_beside("rewind")
        return self.rewind_weights

    def reconstructed(self) -> dict[str, Tensor] | None:
        """The method's own pruned weights (SparseGPT's reconstruction, pruned entries exactly 0),
        read from beside the ticket file and checked against the recorded hash; None when it has none."""
        if not isinstance(self.metadata.get("reconstructed"), dict):
            return None
        if self.reconstructed_weights is None:
            self.reconstructed_weights = self._read_beside("reconstructed")
        return self.reconstructed_weights

    def _read_beside(self, key: str) -> dict[str, Tensor]:
        what = f"{key} weights"
        ref = self.metadata[key]
        if self.path is None:
            raise TicketError(f"ticket names {what} but was not loaded from a file (no {key} file to read)")
        h = str(ref.get("hash", ""))
        if not re.fullmatch(r"[0-9a-f]{16}", h):  # the file name is derived from it: no paths from metadata
            raise TicketError(f"{self.path}: invalid {key} hash {h!r}")
        file = Path(self.path).parent / f"{key}-{h}.safetensors"
        if not file.is_file():
            raise TicketError(f"{self.path}: {what} {file.name} not found beside the ticket")
        from safetensors.torch import load_file

        try:
            weights = load_file(str(file))
        except Exception as e:  # safetensors raises its own error types
            raise TicketError(f"{file}: corrupt {what} ({type(e).__name__})") from None
        if weights_hash(weights) != h:
            raise TicketError(f"{file}: {what} do not match the hash {h} the ticket records")
        return self._check_rewind(weights, what)

    @classmethod
    def load(cls, path) -> "Ticket":
        """Read and fully validate a ticket file; any problem is a one-line TicketError."""
        path = Path(path)
        data = read_bounded(path, MAX_TICKET_BYTES, "ticket file", TicketError)  # no FIFO, /dev/zero
        ticket = cls.from_bytes(data, str(path))
        ticket.path = path
        return ticket

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "<bytes>") -> "Ticket":
        header = _read_header(data, where)
        meta_raw = header.get("__metadata__") or {}
        if meta_raw.get("format") != FORMAT:
            raise TicketError(f"{where}: not a ticketbench ticket (header format {meta_raw.get('format')!r})")
        if meta_raw.get("format_version") != str(FORMAT_VERSION):
            raise TicketError(
                f"{where}: ticket format version {meta_raw.get('format_version')!r} is not supported"
                f" (expected {FORMAT_VERSION})"
            )
        try:
            meta = json.loads(meta_raw.get("ticket", ""))
        except json.JSONDecodeError as e:
            raise TicketError(f"{where}: ticket metadata is not valid JSON: {e.msg}") from None
        except (ValueError, TypeError, RecursionError) as e:  # a number of 5,000 digits, nesting, a non-string
            raise TicketError(f"{where}: ticket metadata is not valid JSON: {str(e).splitlines()[0][:80]}") from None
        if not isinstance(meta, dict):
            raise TicketError(f"{where}: ticket metadata must be a JSON object")
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise TicketError(f"{where}: ticket metadata lacks {', '.join(missing)}")
        try:
            from safetensors.torch import load

            packed = load(data)
        except Exception as e:  # safetensors raises its own error type for corrupt buffers
            raise TicketError(f"{where}: corrupt ticket file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        masks = _unpack_all(packed, meta, where)
        _validate(masks, meta, where)
        ticket = cls(masks, {k: v for k, v in meta.items()})
        ticket.check_consistent(where)
        return ticket

    # -- applying -------------------------------------------------------------------------------
    def apply(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """Check the fingerprint, start from the rewind weights when the ticket has them, transform
        the weights as recorded (pretrained/reinit/shuffle), zero the pruned weights in place and return the ticket's `[(name, parameter)]`
        (pass them with `self.masks` to `MaskEnforcer` to keep them pruned while training)."""
        meta = self.metadata
        params = select_prunable(model, meta.get("include", ()), meta.get("exclude", ()))
        self.check_consistent(reference=dict(params))
        found = fingerprint_of(params)
        if found != self.fingerprint:
            raise TicketError(
                f"ticket is for backbone '{self.backbone}' (fingerprint {self.fingerprint}) but the model is"
                f" '{model_label(model)}' (fingerprint {found}): tickets only apply to the backbone they were found on"
            )
        by_name = dict(params)
        for name, m in self.masks.items():
            p = by_name.get(name)
            if p is None:
                raise TicketError(f"ticket mask '{name}' has no parameter in {model_label(model)}")
            if tuple(p.shape) != tuple(m.shape):
                raise TicketError(f"mask '{name}': shape {tuple(m.shape)} does not match parameter shape {tuple(p.shape)}")
        transform = meta.get("weights", "pretrained")
        gen = torch.Generator().manual_seed(int(meta.get("weights_seed") or 0))
        start = self.starting_weights()
        with torch.no_grad():
            for name, m in self.masks.items():
                p = by_name[name]
                if start is not None:  # late rewinding: the kept weights start from θk
                    p.copy_(start[name].to(device=p.device, dtype=p.dtype))
                if transform == "reinit":
                    p.copy_(reinit_tensor(tuple(p.shape), meta, gen).to(p.dtype))
                elif transform == "shuffle":
                    perm = torch.randperm(p.numel(), generator=gen).to(p.device)
                    p.copy_(p.reshape(-1)[perm].reshape(p.shape))
                p.mul_(m.to(device=p.device, dtype=p.dtype))
        return [(n, by_name[n]) for n in self.masks]


def model_label(model: nn.Module) -> str:
    """A model's backbone preset name when it has one, else its class name."""
    for attr in ("preset", "preset_name"):
        v = getattr(model, attr, None)
        if isinstance(v, str) and v:
            return v
        name = getattr(v, "name", None)
        if isinstance(name, str) and name:
            return name
    return type(model).__name__


def _json_default(o: Any):
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _read_header(data: bytes, where: str) -> dict:
    if len(data) < 8:
        raise TicketError(f"{where}: truncated ticket file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise TicketError(f"{where}: truncated ticket file (header of {n} bytes, file of {len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: malformed, or a 5,000-digit number
        raise TicketError(f"{where}: corrupt ticket file (unreadable safetensors header)") from None
    if not isinstance(header, dict):
        raise TicketError(f"{where}: corrupt ticket file (header is not an object)")
    return header


def _unpack_all(packed: dict[str, Tensor], meta: dict, where: str) -> dict[str, Tensor]:
    order, shapes = meta["order"], meta["shapes"]
    if not isinstance(order, list) or not isinstance(shapes, dict) or set(order) != set(shapes):
        raise TicketError(f"{where}: metadata 'order' and 'shapes' disagree")
    if set(packed) != set(order):
        extra = sorted(set(packed) - set(order))
        lacking = sorted(set(order) - set(packed))
        raise TicketError(f"{where}: masks in file do not match metadata (unexpected {extra}, missing {lacking})")
    masks = {}
    for name in order:
        shape = shapes[name]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise TicketError(f"{where}: mask '{name}': invalid shape {shape!r}")
        t = packed[name]
        n = math.prod(shape)
        expected = (n + 7) // 8
        if t.dtype != torch.uint8 or t.dim() != 1 or t.numel() != expected:
            raise TicketError(
                f"{where}: mask '{name}': expected {expected} packed bytes for shape {tuple(shape)},"
                f" found {t.numel()} of {t.dtype}"
            )
        bits = np.unpackbits(t.numpy(), count=None)
        if bits[n:].any():
            raise TicketError(f"{where}: mask '{name}': non-zero padding bits (corrupt file)")
        masks[name] = torch.from_numpy(bits[:n].astype(bool)).reshape(shape)
    return masks


def _validate(masks: dict[str, Tensor], meta: dict, where: str) -> None:
    found_hash = masks_content_hash(masks, _rewind_hash(meta))
    if found_hash != meta["content_hash"]:
        raise TicketError(f"{where}: mask content hash {found_hash} does not match stored {meta['content_hash']}")
    pruned, total, per = _sparsity_stats(masks)
    stored = meta["sparsity"]
    if not isinstance(stored, dict) or "prunable" not in stored or not isinstance(stored.get("per_tensor"), dict):
        raise TicketError(f"{where}: metadata 'sparsity' must hold 'prunable' and 'per_tensor'")
    real = pruned / total if total else 0.0
    if meta["pruned"] != pruned or meta["total"] != total or not _close(stored["prunable"], real):
        raise TicketError(
            f"{where}: stored sparsity {stored['prunable']} ({meta['pruned']}/{meta['total']}) does not match the"
            f" masks' real sparsity {real} ({pruned}/{total})"
        )
    for name, s in per.items():
        if not _close(stored["per_tensor"].get(name), s):
            raise TicketError(
                f"{where}: stored sparsity of '{name}' {stored['per_tensor'].get(name)} does not match its real sparsity {s}"
            )
    check_sparsity(meta["target_sparsity"], f"{where}: target sparsity")
    if meta["weights"] not in WEIGHT_TRANSFORMS:
        raise TicketError(f"{where}: weights {meta['weights']!r} must be one of {', '.join(WEIGHT_TRANSFORMS)}")
    if meta["weights"] != "pretrained" and not isinstance(meta.get("weights_seed"), int):
        raise TicketError(f"{where}: weights '{meta['weights']}' needs an integer weights_seed")
    check_pattern(masks, meta.get("pattern", UNSTRUCTURED), where)
    if meta.get("weights_init", "normal") not in REINIT_INITS:
        raise TicketError(f"{where}: weights_init {meta['weights_init']!r} must be one of {', '.join(REINIT_INITS)}")


def _close(a, b) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and abs(a - b) <= 1e-12
