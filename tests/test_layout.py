"""The output directory in one place (`bench.core.layout.Layout`) and as a jail: no code joins output
paths by hand, and no write or delete of a report leaves `<out>` (issue 30 item 1, issue 31 item 3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_reports_synth import BACKBONE, PARAMS, _keep, config, make_store, save_ticket

from bench.core.errors import DataError
from bench.core.layout import Layout, file_name, inside

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "reports", "tickets", "ticketbench")
# A literal join of a place of the output directory (`out / "runs"`, `Path(out, "plans")`,
# `out.glob("tickets/*")`, `d / "DONE"`, ...). Only bench/core/layout.py may spell these.
PLACES = r"(runs|tickets|plans|report|pretrain|world|config\.yaml|timings\.json|LAST|DONE|record\.json|" \
         r"search\.json|checkpoint|predictions\.json|\.report-files\.json)"
JOIN = re.compile(rf"""/\s*f?["']{PLACES}["'/]|Path\(\s*[\w.]+\s*,\s*["']{PLACES}["']|glob\(\s*f?["']{PLACES}/""")


def test_no_output_path_join_outside_layout():
    hits = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "bench" / "core" / "layout.py":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if JOIN.search(code):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "output paths joined outside bench/core/layout.py:\n" + "\n".join(hits)


def test_the_grep_sees_the_joins_it_forbids():
    for line in ('d = out / "runs" / rid', "p = Path(out_dir, 'tickets', sid)", 'x.glob("runs/*/record.json")',
                 'out / f"report"', 'theta0 / "DONE"'):
        assert JOIN.search(line), line
    for line in ('layout.run(rid)', 'ctx.report_dir / "README.md"', 'help="report this plan"'):
        assert not JOIN.search(line), line


def test_places_match_the_documented_contract(tmp_path):
    lay = Layout(tmp_path)
    assert lay.run("abc") == tmp_path / "runs" / "abc"
    assert lay.record("abc") == tmp_path / "runs" / "abc" / "record.json"
    assert lay.search("s1") == tmp_path / "tickets" / "s1"
    assert lay.theta0("k") == tmp_path / "pretrain" / "k"
    assert lay.manifest("h") == tmp_path / "plans" / "h.json" and lay.last == tmp_path / "plans" / "LAST"
    assert lay.report() == tmp_path / "report" and lay.matrix == tmp_path / "report" / "matrix.csv"
    assert (lay.config, lay.timings, lay.world) == (tmp_path / "config.yaml", tmp_path / "timings.json",
                                                    tmp_path / "world")
    for bad in ("../x", "a/b", "/abs", ".."):
        with pytest.raises(Exception, match="invalid"):
            lay.run(bad)


def test_file_name_never_names_a_folder():
    assert file_name("toy-uniter@abc123") == "toy-uniter@abc123"
    assert "/" not in file_name("x/../../../notes") and file_name("..") == "__"


def test_inside_refuses_symlinks_and_dots_leading_out(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "report").symlink_to(elsewhere)
    with pytest.raises(DataError, match="outside the output directory"):
        inside(out, out / "report")
    with pytest.raises(DataError, match="outside"):
        inside(out, out / "runs" / ".." / ".." / "notes.md")
    (out / "inner").mkdir()
    (out / "link").symlink_to(out / "inner")  # a symlink that stays inside is fine
    assert inside(out, out / "link" / "x") == out / "link" / "x"


# ---- the report as a jail ------------------------------------------------------------------------
def test_report_symlinked_elsewhere_is_refused_in_one_line(tmp_path):
    from reports import build_report

    out = make_store(tmp_path / "out", tickets=False)
    target = tmp_path / "target"
    target.mkdir()
    (out / "report").symlink_to(target)
    with pytest.raises(DataError) as e:
        build_report(out, config=config())
    assert "outside the output directory" in str(e.value) and "\n" not in str(e.value)
    assert list(target.iterdir()) == []


def test_ticket_backbone_from_the_store_cannot_escape(tmp_path):
    from reports import build_report

    out = make_store(tmp_path / "store" / "out", tickets=False)
    notes = tmp_path / "store" / "notes.md"
    notes.write_text("mine")
    hostile = "x/../../../notes"
    for backbone in (BACKBONE, hostile):  # two backbones: file names carry the backbone
        masks = {PARAMS[0]: _keep(range(0, 8)), PARAMS[1]: _keep(range(0, 8))}
        path = out / "tickets" / file_name(backbone) / "imp__vqa" / "sparsity-0.50.safetensors"
        save_ticket(path, masks, backbone=backbone, source="imp:vqa", method="imp", source_task="vqa",
                    target_sparsity=0.5)
    rd = build_report(out, config=config())
    assert notes.read_text() == "mine"
    assert all(p.resolve().is_relative_to(out.resolve()) for p in tmp_path.rglob("*") if p.is_file()
               if p != notes)
    assert any("x_.._.._.._notes" in p.name for p in rd.iterdir())


def test_rebuild_deletes_only_what_it_wrote(tmp_path):
    from reports import build_report

    out = make_store(tmp_path / "out", tickets=False)
    rd = build_report(out, compare="mine", config=config())
    book = json.loads((rd / ".report-files.json").read_text())["files"]
    assert book["README.md"] and all(len(h) == 16 for h in book.values())  # content hashes
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (rd / "compare_mine.md").write_text("edited by hand")  # no longer the file the build wrote
    book.update({"../../precious.txt": "0" * 16, str(precious): "0" * 16})
    (rd / ".report-files.json").write_text(json.dumps({"files": book}))
    build_report(out, config=config())  # without --compare: its files are stale
    assert precious.read_text() == "keep"
    assert (rd / "compare_mine.md").read_text() == "edited by hand"  # changed since: not ours to delete
    assert not (rd / "compare_mine.csv").exists()  # unchanged since the build wrote it: deleted


def test_old_or_damaged_bookkeeping_deletes_nothing(tmp_path):
    from reports import build_report

    out = make_store(tmp_path / "out", tickets=False)
    rd = build_report(out, compare="mine", config=config())
    for damaged in (["compare_mine.csv"], {"files": ["compare_mine.csv"]}, {"files": {"compare_mine.csv": 3}}):
        (rd / ".report-files.json").write_text(json.dumps(damaged))
        build_report(out, config=config())
        assert (rd / "compare_mine.csv").exists()


def test_plan_field_of_a_manifest_cannot_escape(tmp_path):
    """`report --plans all` labels every row with its manifest's `plan` field, and labels name files."""
    from bench.core.io import atomic_write_json
    from reports import build_report

    out = make_store(tmp_path / "store" / "out", failed=0, tickets=False)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    for name, plan in (("aaaaaaaaaaaa", "aaaaaaaaaaaa"), ("bbbbbbbbbbbb", "x/../../../notes")):
        atomic_write_json(out / "plans" / f"{name}.json", {"plan": plan, "runs": runs, "config": {}})
    (out / "plans" / "LAST").write_text("aaaaaaaaaaaa\n")
    notes = tmp_path / "store" / "notes.md"
    notes.write_text("mine")
    from bench.core.errors import DataError

    try:  # the store's validation refuses the field first; the Layout's jail would stop the write regardless
        build_report(out, config=config(), plans=["all"])
    except DataError as e:
        assert "field 'plan'" in str(e)
    assert notes.read_text() == "mine" and sorted(p.name for p in notes.parent.iterdir()) == ["notes.md", "out"]


def test_an_unchanged_store_reuses_its_figures_and_a_change_redraws_them(tmp_path):
    """Drawing is most of a rebuild's cost (issue 30 item 10): the figures of an unchanged store are the
    files of the last build, checked by content hash; a changed record, or a figure touched by hand, redraws."""
    from reports import build_report

    out = make_store(tmp_path / "out", tickets=False)
    rd = build_report(out, config=config())
    book = json.loads((rd / ".report-files.json").read_text())
    assert "accuracy_vs_sparsity.png" in book["figures"]["files"]
    stamps = {p: p.stat().st_mtime_ns for p in rd.glob("*.png")}
    assert build_report(out, config=config()) == rd
    assert {p: p.stat().st_mtime_ns for p in rd.glob("*.png")} == stamps  # reused, not redrawn
    assert json.loads((rd / ".report-files.json").read_text()) == book

    (rd / "transfer_heatmap_s50.png").write_bytes(b"not ours")  # edited by hand: drawn again
    build_report(out, config=config())
    assert (rd / "transfer_heatmap_s50.png").read_bytes()[:4] == b"\x89PNG"

    record = next(out.glob("runs/imp-vqa_gqa_0.5_0/record.json"))
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "value": data["value"] - 5.0}))
    before = (rd / "accuracy_vs_sparsity.png").stat().st_mtime_ns
    build_report(out, config=config())
    assert (rd / "accuracy_vs_sparsity.png").stat().st_mtime_ns != before  # the results changed: redrawn
    assert json.loads((rd / ".report-files.json").read_text())["figures"]["key"] != book["figures"]["key"]


def test_the_run_store_writes_only_inside_the_output_directory(tmp_path):
    from bench.runner.store import RunStore

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "runs").symlink_to(elsewhere)
    store = RunStore(out)
    with pytest.raises(DataError, match="outside the output directory"):
        store.check_writable()
    with pytest.raises(DataError, match="outside the output directory"):
        store.claim("abc123")
    assert list(elsewhere.iterdir()) == []
    claim = RunStore(out, kind="tickets").claim("s1")  # tickets/ is a plain folder: fine
    assert claim is not None
    claim.release()
