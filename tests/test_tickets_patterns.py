"""N:M tickets (issue 29): `find.pattern`, the pattern every score-based method follows, the record in
the ticket file and the check on load; unstructured keys unchanged."""

import json

import pytest
import torch

import tickets
from bench.core.errors import ConfigError, TicketError
from tickets import Ticket
from tickets.patterns import check_pattern, nm_masks, parse_pattern
from tickets.testing import toy_context

PATTERNED = ("imp", "omp", "pretrained_magnitude", "layerwise_magnitude", "lr_rewind", "snip", "grasp", "movement",
             "early_bird", "random", "wanda", "ria", "sparsegpt")


def test_parse_pattern_accepts_unstructured_and_n_m_only():
    assert parse_pattern("unstructured") is None and parse_pattern("2:4") == (2, 4) and parse_pattern("4:8") == (4, 8)
    for bad in ("4:2", "0:4", "2-4", "2:4:8", "half"):
        with pytest.raises(ConfigError, match="find.pattern: expected 'unstructured' or N:M"):
            parse_pattern(bad)


def test_nm_masks_keep_the_n_highest_of_every_m_inputs_of_each_row():
    g = torch.Generator().manual_seed(0)
    s = {"w": torch.rand(6, 16, generator=g)}
    for pattern, n, m in (("2:4", 2, 4), ("4:8", 4, 8), ("1:4", 1, 4)):
        keep = nm_masks(s, pattern)["w"]
        groups = s["w"].reshape(6, -1, m)
        k = keep.reshape(6, -1, m)
        assert (k.sum(-1) == n).all()
        assert (groups.masked_fill(~k, float("inf")).amin(-1) >= groups.masked_fill(k, float("-inf")).amax(-1)).all()
    with pytest.raises(TicketError, match="multiple of 8"):
        nm_masks({"w": torch.rand(3, 12)}, "4:8")


@pytest.mark.parametrize("method", PATTERNED)
def test_every_score_based_method_makes_valid_2_4_tickets(method):
    ctx = toy_context(steps=3, sparsities=(0.5,), pattern="2:4")
    hp = {"calib_samples": 8} if method in ("wanda", "ria", "sparsegpt") else {}
    ts = tickets.get_method(method)(ctx, hp)
    assert ts and all(t.metadata["pattern"] == "2:4" and t.sparsity == 0.5 for t in ts)
    for t in ts:
        check_pattern(t.masks, "2:4", method)


def test_controls_keep_their_base_tickets_pattern_and_a_wrong_sparsity_is_refused():
    ctx = toy_context(steps=3, sparsities=(0.5,), pattern="2:4")
    ctx.base_ticket = tickets.get_method("imp")(ctx)[0]
    for control in ("reinit", "shuffle"):
        t = tickets.get_method(control)(ctx)[0]
        assert t.metadata["pattern"] == "2:4"
    with pytest.raises(TicketError, match="pattern 2:4 has sparsity 0.5, asked for 0.7"):
        tickets.get_method("omp")(toy_context(steps=3, sparsities=(0.7,), pattern="2:4"))


def test_ticket_file_records_its_pattern_and_load_checks_every_group(tmp_path):
    ctx = toy_context(sparsities=(0.5,), pattern="2:4")
    t = tickets.get_method("pretrained_magnitude")(ctx)[0]
    back = Ticket.load(t.save(tmp_path / "t.safetensors"))
    assert back.metadata["pattern"] == "2:4" and back.content_hash == t.content_hash
    # unstructured tickets say so; files written before patterns existed load as unstructured
    u = tickets.get_method("pretrained_magnitude")(toy_context(sparsities=(0.5,)))[0]
    assert u.metadata["pattern"] == "unstructured"
    # a file claiming 2:4 whose masks are not: one line naming the mask, row and group
    from safetensors.torch import save

    from tickets.ticket import _pack

    meta = dict(u.metadata, pattern="2:4")
    data = save({n: torch.from_numpy(_pack(m)) for n, m in u.masks.items()},
                metadata={"format": "ticketbench-ticket", "format_version": "1", "ticket": json.dumps(meta)})
    (tmp_path / "bad.safetensors").write_bytes(data)
    with pytest.raises(TicketError, match=r"bad.safetensors: mask 'blocks\.0\.q\.weight' is not 2:4: row \d+, inputs"):
        Ticket.load(tmp_path / "bad.safetensors")
    u.metadata["pattern"] = "2:4"
    with pytest.raises(TicketError, match="is not 2:4"):
        u.save(tmp_path / "refused.safetensors")


def test_find_pattern_in_the_plan_one_sparsity_supported_methods_and_unchanged_keys():
    from bench.config import apply_overrides, load_config
    from bench.plan import build_plan, key_settings

    base = load_config("smoke")
    assert "pattern" not in key_settings(base, "find")  # the default adds nothing to the plan's hash
    sets = ["find.pattern=2:4", "find.sparsities=0.5", "matrix.control_sparsities=0.5", "matrix.controls=[]",
            "find.one_shot=omp:vqa,wanda:vqa", "matrix.baselines=random"]
    plan = build_plan(apply_overrides(base, sets))
    dense = build_plan(apply_overrides(base, sets[1:]))
    assert plan.hash != dense.hash
    s = plan.search("wanda:vqa")
    assert plan.search_id(s, "t", "d") != dense.search_id(dense.search("wanda:vqa"), "t", "d")
    with pytest.raises(ConfigError, match=r"find.pattern=2:4 has sparsity 0.5, but .* hold 0.7"):
        build_plan(apply_overrides(base, sets[:1] + ["find.sparsities=0.5,0.7"] + sets[2:]))
    with pytest.raises(ConfigError, match="method 'synflow' .* cannot make N:M"):
        build_plan(apply_overrides(base, sets[:4] + ["find.one_shot=synflow"] + sets[5:]))
    with pytest.raises(ConfigError, match="find.pattern: expected"):
        build_plan(apply_overrides(base, ["find.pattern=2/4"]))
