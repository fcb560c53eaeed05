import json
import struct

import pytest
import torch

from bench.core.errors import ConfigError, TicketError
from tickets import Ticket, global_magnitude_masks, prunable_fingerprint, select_prunable
from tickets.fingerprint import fingerprint_of
from tickets.testing import ToyTransformer


def _ticket(model=None, s=0.5, **kw):
    model = model or ToyTransformer()
    named = model.prunable_parameters()
    masks = global_magnitude_masks({n: p.detach() for n, p in named}, s)
    kw.setdefault("source", "imp:toy")
    kw.setdefault("method", "imp")
    return Ticket.build(masks, backbone=model.preset, fingerprint=model.fingerprint(), target_sparsity=s,
                        seed=3, round=2, **kw)


def test_fingerprint_order_and_shape_sensitive():
    a = prunable_fingerprint([("x", (2, 3)), ("y", (4,))])
    assert a == prunable_fingerprint([("x", [2, 3]), ("y", [4])])
    assert a != prunable_fingerprint([("y", (4,)), ("x", (2, 3))])
    assert a != prunable_fingerprint([("x", (3, 2)), ("y", (4,))])
    assert len(a) == 16


def test_select_prunable_include_exclude():
    m = ToyTransformer()
    base = [n for n, _ in select_prunable(m)]
    assert base == [n for n, _ in m.prunable_parameters()] and all(".weight" in n for n in base)
    plus = [n for n, _ in select_prunable(m, include=[r"^pooler\.weight$"], exclude=[r"\.ff_in\."])]
    assert plus[-1] == "pooler.weight" and not any(".ff_in." in n for n in plus)
    with pytest.raises(ConfigError, match="matches no parameter"):
        select_prunable(m, include=["nothing_here"])
    with pytest.raises(ConfigError, match="not a valid regex"):
        select_prunable(m, include=["("])


def test_round_trip_bit_exact_and_size(tmp_path):
    big = ToyTransformer(d=64, ff=256, layers=2)
    t = _ticket(big, 0.7)
    path = t.save(tmp_path / "t.safetensors")
    u = Ticket.load(path)
    assert list(u.masks) == list(t.masks)
    for n in t.masks:
        assert torch.equal(u.masks[n], t.masks[n])
    assert u.content_hash == t.content_hash and u.sparsity == t.sparsity
    m = u.metadata
    for key in ("format_version", "backbone", "fingerprint", "source", "method", "hparams", "target_sparsity",
                "round", "seed", "ticketbench", "include", "exclude", "content_hash"):
        assert key in m
    assert m["sparsity"]["model"] == m["pruned"] / sum(p.numel() for p in big.parameters()) or m["sparsity"]["model"] is None
    data = path.read_bytes()
    header = 8 + struct.unpack("<Q", data[:8])[0]
    n = sum(x.numel() for x in t.masks.values())
    assert (len(data) - header) * 8 <= 1.01 * n


def test_metadata_in_safetensors_header(tmp_path):
    from safetensors import safe_open

    path = _ticket().save(tmp_path / "t.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert meta["format"] == "ticketbench-ticket"
        assert json.loads(meta["ticket"])["method"] == "imp"
        assert all(f.get_tensor(k).dtype == torch.uint8 for k in f.keys())


def _rewrite(path, edit):
    """Rewrite a ticket's header metadata through `edit(meta_dict)` keeping the tensors."""
    from safetensors.torch import load, save

    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    meta = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["ticket"])
    edit(meta)
    tensors = load(data)
    hdr = {"format": "ticketbench-ticket", "format_version": "1", "ticket": json.dumps(meta)}
    path.write_bytes(save(tensors, metadata=hdr))


def _one_line_error(path, match):
    with pytest.raises(TicketError, match=match) as e:
        Ticket.load(path)
    assert "\n" not in str(e.value)


def test_truncated_and_corrupt_files(tmp_path):
    path = _ticket().save(tmp_path / "t.safetensors")
    data = path.read_bytes()
    for i, cut in enumerate((4, 100, len(data) - 5)):
        p = tmp_path / f"cut{i}.safetensors"
        p.write_bytes(data[:cut])
        _one_line_error(p, "truncated|corrupt")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 20)
    _one_line_error(garbage, "corrupt")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # a mask bit flipped: content hash no longer matches
    p = tmp_path / "flipped.safetensors"
    p.write_bytes(bytes(flipped))
    _one_line_error(p, "content hash|padding")
    _one_line_error(tmp_path / "absent.safetensors", "not found")


def test_stored_sparsity_must_match(tmp_path):
    path = _ticket().save(tmp_path / "t.safetensors")
    _rewrite(path, lambda m: m["sparsity"].update(prunable=0.9))
    _one_line_error(path, "stored sparsity")
    path = _ticket().save(tmp_path / "u.safetensors")
    name = next(iter(ToyTransformer().prunable_parameters()))[0]
    _rewrite(path, lambda m: m["sparsity"]["per_tensor"].update({name: 0.01}))
    _one_line_error(path, f"sparsity of '{name}'")


def test_wrong_shapes_and_versions(tmp_path):
    path = _ticket().save(tmp_path / "t.safetensors")
    name = next(iter(ToyTransformer().prunable_parameters()))[0]
    _rewrite(path, lambda m: m["shapes"].update({name: [3, 3]}))
    _one_line_error(path, "packed bytes")
    path = _ticket().save(tmp_path / "v.safetensors")
    _rewrite(path, lambda m: m.pop("fingerprint"))
    _one_line_error(path, "lacks fingerprint")


def test_bool_masks_required():
    with pytest.raises(TicketError, match="bool"):
        Ticket({"a": torch.ones(3)}, {})


def test_apply_zeroes_pruned_and_refuses_other_backbone():
    model = ToyTransformer()
    t = _ticket(model)
    before = {n: p.detach().clone() for n, p in model.prunable_parameters()}
    named = t.apply(model)
    for n, p in named:
        assert torch.equal(p.detach(), before[n] * t.masks[n])
    other = ToyTransformer(d=8)
    with pytest.raises(TicketError) as e:
        t.apply(other)
    msg = str(e.value)
    assert t.fingerprint in msg and other.fingerprint() in msg and "toy-test" in msg and "\n" not in msg


def test_mask_shape_mismatch(tmp_path):
    model = ToyTransformer()
    t = _ticket(model)
    name = next(iter(t.masks))
    t.masks[name] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(TicketError, match=f"mask shape mismatch: mask '{name}' has shape \\(3, 3\\)"):
        t.apply(model)
    with pytest.raises(TicketError, match="mask shape mismatch"):
        t.save(tmp_path / "bad.safetensors")
    assert not list(tmp_path.iterdir())  # nothing written
    # A file whose masks were swapped for other shapes (hash and sparsities recomputed) is refused on load.
    other = Ticket(dict(t.masks), {k: v for k, v in t.metadata.items() if k not in ("content_hash",)})
    import json as _json

    from safetensors.torch import save

    from tickets.ticket import _pack
    hdr = {"format": "ticketbench-ticket", "format_version": "1", "ticket": _json.dumps(other.metadata)}
    path = tmp_path / "swapped.safetensors"
    path.write_bytes(save({n: torch.from_numpy(_pack(m)) for n, m in other.masks.items()}, metadata=hdr))
    _one_line_error(path, "mask shape mismatch")
    assert fingerprint_of(list(model.prunable_parameters())) == model.fingerprint()


def test_apply_reinit_and_shuffle_are_seeded():
    base = ToyTransformer()
    theta = {n: p.detach().clone() for n, p in base.prunable_parameters()}
    for weights in ("reinit", "shuffle"):
        t = _ticket(base, weights=weights, weights_seed=7)
        a, b = ToyTransformer(), ToyTransformer()
        pa = {n: p.detach() for n, p in t.apply(a)}
        pb = {n: p.detach() for n, p in t.apply(b)}
        for n, m in t.masks.items():
            assert torch.equal(pa[n], pb[n])  # same seed, same weights
            assert not torch.equal(pa[n], theta[n] * m)
            assert (pa[n][~m] == 0).all()
            if weights == "shuffle":  # kept values are drawn from the tensor's own values
                assert torch.isin(pa[n][m], theta[n]).all()
            else:
                assert abs(float(pa[n][m].std()) - 0.02) < 0.01
    with pytest.raises(TicketError, match="weights_seed"):
        bad = _ticket(base, weights="reinit")
        Ticket.from_bytes(bad.to_bytes())


def test_target_sparsity_out_of_range_writes_nothing(tmp_path):
    with pytest.raises(TicketError, match=r"\[0, 1\)"):
        Ticket.build({"a": torch.ones(4, dtype=torch.bool)}, backbone="b", fingerprint="f", source="imp:x",
                     method="imp", target_sparsity=1.2).save(tmp_path / "t.safetensors")
    assert not list(tmp_path.iterdir())
