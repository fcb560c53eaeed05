import pytest
import torch

import tickets
from bench.core.errors import TicketbenchError, TicketError
from bench.core.source import Source
from tickets import TicketStore, parse_source
from tickets.sources import sparsity_label
from tickets.testing import ToyTransformer, toy_context
from tickets.tools import diff, jaccard, ls, show


def test_parse_source():
    assert parse_source("imp:vqa") == Source("imp", "vqa") and str(parse_source("imp:vqa")) == "imp:vqa"
    assert parse_source("pretrained_magnitude") == Source("pretrained_magnitude", "")
    assert parse_source("pretrained_magnitude").objective == "pretrain"
    assert str(parse_source("reinit:pretrain")) == "reinit:pretrain"
    assert parse_source("dense").is_dense and str(parse_source("dense")) == "dense"
    with pytest.raises(TicketbenchError, match="did you mean 'omp'"):
        parse_source("opm:vqa")
    for bad in ("imp:../x", "imp:a/b", "", "imp:a:b", "imp:", ":vqa"):
        with pytest.raises(TicketError):
            parse_source(bad)


def test_sparsity_label():
    assert sparsity_label(0.5) == "0.50" and sparsity_label(0.3) == "0.30" and sparsity_label(0.125) == "0.125"
    with pytest.raises(TicketError):
        sparsity_label(1.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    ctx = toy_context(source="vqa")
    st = TicketStore(root)
    for t in tickets.methods.get("imp")(ctx) + tickets.methods.get("pretrained_magnitude")(ctx):
        st.put(t)
    return st, ctx


def test_store_layout_get_and_missing(store):
    st, ctx = store
    assert st.path("imp:vqa", 0.5) == st.root / "imp__vqa" / "sparsity-0.50.safetensors"
    assert st.path("imp:vqa", 0.5).exists()
    assert (st.root / "pretrained_magnitude__none" / "sparsity-0.90.safetensors").exists()
    t = st.get("imp:vqa", 0.7, fingerprint=ctx.fingerprint)
    assert t.metadata["round"] == 3 and t.sparsity == pytest.approx(0.7, abs=1e-3)
    with pytest.raises(TicketError, match="find --sources imp:gqa"):
        st.get("imp:gqa", 0.5)
    with pytest.raises(TicketError, match="expected fingerprint other"):
        st.get("imp:vqa", 0.5, fingerprint="other")
    with pytest.raises(TicketError, match="dense"):
        st.get("dense", 0.5)
    rows = st.ls()
    assert len(rows) == 8 and {r["source"] for r in rows} == {"imp:vqa", "pretrained_magnitude"}


def test_tools_show_diff_ls_jaccard(store, tmp_path):
    st, ctx = store
    a, b = st.path("imp:vqa", 0.5), st.path("pretrained_magnitude", 0.5)
    text = show(a)
    assert "imp:vqa" in text and "toy-test" in text and "50.00%" in text
    for name in ctx.theta0:
        assert name in text
    ta, tb = st.get("imp:vqa", 0.5), st.get("pretrained_magnitude", 0.5)
    j = jaccard(ta, tb)
    kept_a = torch.cat([m.flatten() for m in ta.masks.values()])
    kept_b = torch.cat([m.flatten() for m in tb.masks.values()])
    assert j == pytest.approx(int((kept_a & kept_b).sum()) / int((kept_a | kept_b).sum()))
    assert jaccard(ta, ta) == 1.0
    d = diff(a, b)
    assert f"{j:.4f}" in d and all(n in d for n in ctx.theta0)
    listing = ls(st.root)
    assert listing.count("imp:vqa") == 4 and "pretrained_magnitude" in listing
    # A corrupt file shows up as an error line; other backbones are refused by diff.
    broken = st.root / "omp__vqa" / "sparsity-0.50.safetensors"
    broken.parent.mkdir()
    broken.write_bytes(b"\x01\x02")
    assert "truncated" in ls(st.root)
    broken.unlink()
    broken.parent.rmdir()
    other = tickets.methods.get("pretrained_magnitude")(toy_context(ToyTransformer(d=8)))[0]
    op = other.save(tmp_path / "other.safetensors")
    with pytest.raises(TicketError, match="different backbones"):
        diff(a, op)
    with pytest.raises(TicketError, match="not a ticket directory"):
        ls(tmp_path / "nope")
