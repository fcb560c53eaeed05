"""The plan and the results object: one plan per config, never pooled with another; a run's numbers
are a function of its run id alone (not of how many workers computed it); adding a method searches
only that method."""

from __future__ import annotations

import shutil

import pytest
from reliability_support import prepare, records, tiny_config

from bench.core.source import Source
from bench.pipeline import run_pipeline
from bench.plan import build_plan
from reports import build_report
from reports.store import load_results


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """World, θ0 and the imp:snli_ve tickets of the tiny config (built once)."""
    out = tmp_path_factory.mktemp("plan")
    prepare(out)
    return out


def test_plan_is_built_once_and_names_everything():
    plan = build_plan(tiny_config())
    assert plan.ladder == (0.5, 0.9) and plan.search("imp:vqa").sparsities == plan.ladder
    control = plan.search("reinit:pretrain")
    assert control.base == Source("imp", "pretrain") and not control.trains and control.sparsities == (0.5,)
    assert not plan.search("random").trains and plan.search("imp:gqa").trains
    # Bases come before the searches derived from them; dense has no search.
    order = [s.source for s in plan.searches]
    assert order.index(Source("imp", "pretrain")) < order.index(Source("reinit", "pretrain"))
    assert "dense" in {str(c.source) for c in plan.cells} and Source("dense") not in order
    # The search seed is apart from every matrix seed (a task's own ticket replays nothing of its search).
    assert plan.search_seed not in range(plan.config.matrix.seeds)
    text = plan.describe()
    assert plan.hash in text and "reinit:pretrain" in text and "branch of imp:pretrain" in text


def test_subset_flags_are_overrides_and_checked_against_the_ladder():
    from bench.core.errors import ConfigError

    plan = build_plan(tiny_config("matrix.sparsities=0.5", "matrix.tasks=vqa"))
    assert {c.sparsity for c in plan.cells if not c.source.is_dense} == {0.5}
    # IMP's ladder does not follow the matrix subset: the same tickets are found either way.
    assert plan.search("imp:vqa").sparsities == (0.5, 0.9)
    with pytest.raises(ConfigError, match="not on the ticket ladder"):
        build_plan(tiny_config("matrix.sparsities=0.6"))


def test_a_schedule_that_misses_the_ladder_fails_before_anything_runs():
    """IMP's fraction modes yield their own sparsities; a plan asking for one they never reach is refused
    up front (it used to fail at the matrix, after every search had run)."""
    from bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="yields tickets at 0.1, 0.19.*not at 0.5"):
        build_plan(tiny_config("find.hparams.imp.mode=of_remaining"))
    plan = build_plan(tiny_config("find.hparams.imp.mode=of_original", "find.hparams.imp.prune_fraction=0.1"))
    assert plan.search("imp:vqa").sparsities == tuple(round(0.1 * k, 6) for k in range(1, 10))
    assert {c.sparsity for c in plan.cells if c.source == Source("imp", "vqa")} == {0.5, 0.9}


def test_two_plans_in_one_output_directory_give_two_reports(prepared, tmp_path):
    out = tmp_path / "two"
    shutil.copytree(prepared, out)
    subset = {"tasks": ["snli_ve"], "sources": ["imp:snli_ve", "dense"]}
    run_pipeline(tiny_config(), out, stages=["matrix"], quiet=True, **subset)
    first = load_results(out)
    run_pipeline(tiny_config("finetune.steps=4"), out, stages=["matrix"], quiet=True, **subset)
    second = load_results(out)
    assert first.plans != second.plans and len(records(out)) == 2 * len(first.frame)
    assert set(first.frame["run_id"]).isdisjoint(second.frame["run_id"])
    # The report reads the last plan only, or the one asked for; mixing keeps the plans apart.
    report = build_report(out)
    assert set(load_results(out).frame["run_id"]) == set(second.frame["run_id"])
    assert len((report / "matrix.csv").read_text().splitlines()) == len(second.frame) + 1
    again = load_results(out, plan=first.plans[0])
    assert set(again.frame["run_id"]) == set(first.frame["run_id"])
    mixed = load_results(out, plans=["all"])
    assert set(mixed.frame["plan"]) == {first.plans[0], second.plans[0]} and len(mixed.frame) == 2 * len(first.frame)
    build_report(out, plans=["all"])
    assert "plan" in (out / "report" / "matrix.csv").read_text().splitlines()[0]


def test_numbers_do_not_depend_on_the_worker_count(prepared, tmp_path):
    """The same plan with 1 and 2 local workers: identical run ids and identical values (retrieval,
    whose ranking is the most sensitive to summation order, included)."""
    values = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        shutil.copytree(prepared, out)
        run_pipeline(tiny_config(), out, stages=["matrix"], quiet=True, tasks=["snli_ve", "retrieval"],
                     sources=["imp:snli_ve", "dense"], workers=workers)
        values.append({r["run_id"]: r["value"] for r in records(out)})
    assert values[0] == values[1] and len(values[0]) == 6


def test_adding_a_method_searches_only_that_method(prepared, tmp_path):
    out = tmp_path / "add"
    shutil.copytree(prepared, out)
    before = {p.parent.parent.name: p.stat().st_mtime_ns for p in out.glob("tickets/*/*/sparsity-*.safetensors")}
    run_pipeline(tiny_config("find.one_shot=omp:snli_ve"), out, stages=["find"], quiet=True,
                 tasks=["snli_ve"], sources=["imp:snli_ve", "omp:snli_ve", "dense"])
    after = {p.parent.parent.name: p.stat().st_mtime_ns for p in out.glob("tickets/*/*/sparsity-*.safetensors")}
    assert all(after[k] == v for k, v in before.items()) and len(set(after) - set(before)) == 1


def test_workers_follow_the_visible_gpus(monkeypatch, tmp_path):
    """`matrix.workers=0` is one worker per visible GPU, and each local worker process sees one GPU of
    its own through CUDA_VISIBLE_DEVICES (checked with fake devices on a CPU machine)."""
    from runner_fakes import counting_pair, make_pairs

    from bench.runner.executors import run_pairs
    from bench.runner.stages import workers
    from bench.runner.store import RunStore

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert workers(build_plan(tiny_config("matrix.workers=0"))) == 4
    assert workers(build_plan(tiny_config("matrix.workers=2"))) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    pairs = make_pairs(4, sleep=0.3)
    run_pairs(pairs, tmp_path, counting_pair, workers=2, progress=False)
    recs = [RunStore(tmp_path).read_record(p.run_id) for p in pairs]
    by_pid = {r["pid"]: r["cuda_visible_devices"] for r in recs}
    assert set(by_pid.values()) == {"2", "3"} and len(by_pid) == 2


def test_data_check_command(prepared, tmp_path, capsys):
    """`ticketbench data check` reads the splits and looks up image ids without training: exit 0 when all
    is found, 1 (naming the missing ids) when the feature files are gone."""
    from bench.cli import main

    args = ["data", "check", "smoke", "--tasks", "snli_ve", "--sample", "0", "--out"]
    assert main([*args, str(prepared)]) == 0 and "snli_ve" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(prepared / "world", broken / "world")
    for f in (broken / "world" / "features" / "uniter").glob("*.npz"):
        f.unlink()
    assert main([*args, str(broken)]) == 1 and "missing" in capsys.readouterr().out


def test_workers_die_with_their_runner(tmp_path):
    """kill -9 of a runner with local worker processes: its workers exit too (no orphan keeps
    training, holding memory or a GPU)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    def children(pid: int) -> list[int]:
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
        return out

    fakes = Path(__file__).with_name("runner_fakes.py")
    proc = subprocess.Popen([sys.executable, str(fakes), str(tmp_path), "--pairs", "4", "--sleep", "60",
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_path.glob("calls/*.log"))) < 2:
        time.sleep(0.1)
    workers = [c for c in children(proc.pid) if Path(f"/proc/{c}/cmdline").read_bytes().count(b"spawn")]
    assert workers, "no worker process started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")]
    assert not alive


def test_a_matrix_with_failed_pairs_exits_non_zero(prepared, tmp_path, capsys):
    """Pairs that fail for their own reason (here: the loss diverges) do not stop the others, the report
    is still written, and the command's exit status says that runs failed."""
    from bench.cli import main

    out = tmp_path / "fail"
    shutil.copytree(prepared, out)
    rc = main(["run", "smoke", "--out", str(out), "--quiet", "--tasks", "snli_ve", "--sources", "dense",
               "--set", "pretrain.steps=5", "--set", "find.steps=3", "--set", "finetune.steps=3",
               "--set", "finetune.lr=1e12", "--set", "finetune.grad_clip=0"])
    err = capsys.readouterr().err
    assert rc != 0 and "run(s) failed" in err and len(err.strip().splitlines()) == 1


def test_two_runners_on_a_fresh_folder_both_get_the_world(tmp_path):
    """Two processes generating one toyland world at once both finish with the same world, and a partial
    world left by a killed writer is cleaned up."""
    import subprocess
    import sys

    out = tmp_path / "world"
    stale = tmp_path / ".world.partial-999999999-deadbeef"
    stale.mkdir()
    code = ("import sys; from bench.data.toyland import generate_world; "
            "print(generate_world(sys.argv[1], seed=0, scale='smoke')['seed'])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    assert (out / "MANIFEST.json").is_file() and not stale.exists()
    assert not list(tmp_path.glob(".world.partial-*"))


def test_a_hub_id_fails_at_once_naming_the_field(tmp_path, monkeypatch, capsys):
    """No network at runtime: the command runs offline unless told otherwise, so a hub id is one line
    naming backbone.checkpoint, not a minute of retries."""
    import time

    from bench.cli import main

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    rc = main(["pretrain", "smoke", "--out", str(tmp_path), "--quiet", "--set", "backbone.preset=minilm-uniter",
               "--set", "backbone.checkpoint=someone/uniter-base", "--set", "world.scale=smoke"])
    err = capsys.readouterr().err
    assert rc != 0 and "set backbone.checkpoint" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 60


def test_dense_seeds_and_the_convergence_reference_are_cells_of_the_plan():
    """Dense gets max(seeds, dense_seeds) seeds while tickets keep `matrix.seeds`; the convergence
    check adds dense at twice the recipe's steps, as many seeds as dense, as cells of their own kind."""
    from bench.plan import CONVERGENCE_FACTOR

    plain = build_plan(tiny_config("matrix.tasks=vqa,gqa"))
    assert plain.dense_seeds == 1 and {c.steps_factor for c in plain.cells} == {1}
    plan = build_plan(tiny_config("matrix.tasks=vqa,gqa", "matrix.dense_seeds=3", "matrix.convergence_check=true"))
    assert plan.hash != plain.hash and plan.dense_seeds == 3
    dense = sorted((c.task, c.seed) for c in plan.cells if c.source.is_dense and c.steps_factor == 1)
    assert dense == [(t, s) for t in ("gqa", "vqa") for s in range(3)]
    long = [c for c in plan.cells if c.steps_factor != 1]
    assert {str(c.source) for c in long} == {"dense"} and {c.steps_factor for c in long} == {CONVERGENCE_FACTOR}
    assert sorted((c.task, c.seed) for c in long) == dense
    assert {c.seed for c in plan.cells if not c.source.is_dense} == {0}
    assert len(plan.cells) == len(plain.cells) + 2 * 2 + 2 * 3
    assert plan.finetune_settings("vqa", 1, 2).steps == 2 * plan.finetune_settings("vqa", 1).steps
    text = plan.describe()
    assert "dense 3" in text and "dense (2× steps)" in text and "convergence check" in text
    # More ticket seeds than dense_seeds: dense follows the tickets; without dense, no reference.
    assert build_plan(tiny_config("matrix.seeds=4", "matrix.dense_seeds=2")).dense_seeds == 4
    none = build_plan(tiny_config("matrix.sources=imp:vqa", "matrix.convergence_check=true"))
    assert not any(c.source.is_dense for c in none.cells)


def test_run_ids_hash_the_ticket_content_not_its_label(tmp_path):
    """Two sources with identical tickets are one run (the runner trains it once); a control on the same
    masks but other starting weights, or a longer dense run, is another."""
    from runner_fakes import calls, counting_pair

    from bench.runner.executors import run_pairs
    from bench.runner.finetune import ticket_weights
    from bench.runner.pairs import PairSpec

    common = dict(backbone="toy-uniter", sparsity=0.3, task="gqa", seed=0, ticket_path="/t/x.safetensors",
                  ticket_hash="abcdef0123456789", theta0_hash="theta0", split="dev", data_hash="data", config={"steps": 3})
    imp = PairSpec(source="imp:vqa", method="imp", source_task="vqa", **common)
    omp = PairSpec(source="omp:vqa", method="omp", source_task="vqa", **common)
    reinit_meta = {"weights": "reinit", "weights_init": "fan_in_uniform", "weights_seed": 10000, "source": "x"}
    reinit = PairSpec(source="reinit:vqa", method="reinit", source_task="vqa",
                      ticket_weights=ticket_weights(reinit_meta), **common)
    shuffle = PairSpec(source="shuffle:vqa", method="shuffle", source_task="vqa",
                       ticket_weights=ticket_weights({"weights": "shuffle", "weights_seed": 10000}), **common)
    assert ticket_weights({"weights": "pretrained", "weights_seed": 3}) == {}
    assert imp.run_id == omp.run_id and len({imp.run_id, reinit.run_id, shuffle.run_id}) == 3
    dense = dict(common, ticket_path=None, ticket_hash=None, sparsity=0.0)
    d1 = PairSpec(source="dense", method="dense", source_task="", **dense)
    d2 = PairSpec(source="dense", method="dense", source_task="", steps_factor=2, **dict(dense, config={"steps": 6}))
    assert d1.run_id != d2.run_id and d2.identity()["steps_factor"] == 2 and "2×steps" in d2.label
    summary = run_pairs([imp, omp, reinit], tmp_path, counting_pair, progress=False)
    assert summary.total == 2 and calls(tmp_path) == {imp.run_id: 1, reinit.run_id: 1}


def test_identical_tickets_train_once_and_the_dense_reference_runs(prepared, tmp_path):
    """End to end on the tiny plan: IMP's first round and one-shot magnitude pruning after the same
    fine-tuning are one ticket, so one run reported under both names; dense runs with its extra seeds
    and at twice the steps (own run ids, `steps_factor` 2 in the frame), and the report checks convergence."""
    out = tmp_path / "shared"
    shutil.copytree(prepared, out)
    cfg = tiny_config("find.one_shot=omp:snli_ve", "matrix.dense_seeds=2", "matrix.convergence_check=true")
    run_pipeline(cfg, out, stages=["find", "matrix"], quiet=True, tasks=["snli_ve"],
                 sources=["imp:snli_ve", "omp:snli_ve", "dense"])
    from tickets import Ticket

    (imp50,) = out.glob("tickets/*/imp__snli_ve/sparsity-0.50.safetensors")
    (omp50,) = out.glob("tickets/*/omp__snli_ve/sparsity-0.50.safetensors")
    assert Ticket.load(imp50).content_hash == Ticket.load(omp50).content_hash  # the premise
    recs = records(out)
    # cells: dense × 2 seeds, dense 2× × 2 seeds, imp and omp at 50 % and 90 %: 8; the 50 % pair is one run.
    assert len(recs) == 7 and all(r["status"] == "done" for r in recs)
    frame = load_results(out).frame
    assert len(frame) == 8 and frame["run_id"].nunique() == 7
    shared = frame[(frame["sparsity"] == 0.5) & (frame["source"] != "dense")]
    assert set(shared["source"]) == {"imp:snli_ve", "omp:snli_ve"} and shared["run_id"].nunique() == 1
    assert shared["value"].nunique() == 1
    long = frame[frame["steps_factor"] == 2]
    assert set(long["source"]) == {"dense"} and sorted(long["seed"]) == [0, 1]
    assert set(long["run_id"]).isdisjoint(frame[frame["steps_factor"] == 1]["run_id"])
    steps = {r["run_id"]: r["config"]["settings"]["steps"] for r in recs if r["source"] == "dense"}
    assert sorted(set(steps.values())) == [3, 6]
    report = build_report(out)
    conv = (report / "dense_convergence.csv").read_text()
    assert "snli_ve" in conv and "not checked" not in conv
    assert "**Dense reference:** 2 seed(s) per task" in (report / "README.md").read_text()


def test_loader_workers_and_threads_change_no_run_id_nor_the_plan():
    """Execution-only settings: the same run ids, search ids and plan hash whatever the workers or threads."""
    from bench.runner.finetune import pair_identity

    def ids(*overrides):
        plan = build_plan(tiny_config(*overrides))
        search = plan.searches[0]
        return (plan.hash, plan.search_id(search, "theta0", "data"),
                [pair_identity(plan, plan.finetune_settings(t, 0), "pretrain/x") for t in plan.config.matrix.tasks])

    base = ids()
    assert ids("finetune.loader_workers=4", "matrix.threads=8") == base
    assert ids("finetune.lr=0.5") != base  # a setting that changes a number does change them
