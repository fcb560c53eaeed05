"""The leaderboard's columns for issue 29: each method's pattern, calibration samples and peak memory
beside its search cost (read from the searches' `search.json`)."""

import json
import math

from test_reports_compare_leaderboard import _store

from reports.leaderboard import leaderboard, search_costs, search_facts, with_search_facts
from reports.store import collect_matrix


def test_pattern_calibration_samples_and_peak_memory_columns(tmp_path):
    store = _store(tmp_path)
    (store / "tickets" / "h1" / "mine__vqa" / "search.json").write_text(json.dumps(
        {"seconds": 2.5, "pattern": "2:4",
         "cost": {"train_steps": 0, "calib_samples": 128, "calib_calls": 2, "peak_rss_mb": 512.5}}))
    df = collect_matrix(store)
    sources = sorted(set(df["source"]))
    lb = leaderboard(df, ["mine", "flow"], "imp", costs=search_costs(store, sources))
    s = with_search_facts(lb.summary, search_facts(store, sources)).set_index("method")
    assert s.loc["mine", "pattern"] == "2:4" and s.loc["mine", "calib_samples"] == 128
    assert s.loc["mine", "peak_rss_mb"] == 512.5
    # searches recorded before patterns and memory were: unstructured, memory unknown, no calibration
    assert s.loc["flow", "pattern"] == "unstructured" and math.isnan(s.loc["flow", "peak_rss_mb"])
    assert s.loc["flow", "calib_samples"] == 0 and s.loc["imp", "pattern"] == "unstructured"


def test_calibration_flops_and_evaluated_as_columns(tmp_path):
    """The calibration data named from the search's record; theoretical FLOPs from the ticket files
    (a pruned matmul weight saves its multiply-add, a pruned embedding nothing); the methods whose
    paper publishes a trained network are labelled as masks rewound to θ0."""
    import torch

    from bench.cost import _token_weights, kept_flops
    from reports.leaderboard import calibration_of, evaluated_as
    from tickets import Ticket

    assert calibration_of({"source_task": "vqa", "cost": {"calib_samples": 64}, "hparams": {"calib_seed": 3}}) == \
        "vqa train split, 64 samples, seed 3"
    assert calibration_of({"source_task": "pretrain", "cost": {"calib_samples": 8}}) == "pre-training corpus, 8 samples"
    assert calibration_of({"cost": {"train_steps": 5}}) == ""
    assert calibration_of({"source_task": "nlvr2", "cost": {"score_calls": 8}}) == "nlvr2 train split, 8 gradient batches"
    assert evaluated_as("movement").startswith("mask of movement, rewound to θ0")
    assert evaluated_as("lr_rewind").startswith("mask of lr_rewind") and evaluated_as("wanda") == "its ticket on θ0"

    weights = _token_weights("toy-uniter")
    name = "encoder.layer.0.intermediate.dense.weight"
    mask = torch.ones(weights[name], dtype=torch.bool)
    mask[: weights[name] // 2] = False
    expect = 1 - (weights[name] // 2) / sum(weights.values())
    assert abs(kept_flops("toy-uniter", {name: mask, "embeddings.word_embeddings.weight": torch.zeros(4, dtype=torch.bool)})
               - expect) < 1e-12

    store = _store(tmp_path)
    d = store / "tickets" / "h1" / "mine__vqa"
    (d / "search.json").write_text(json.dumps({"seconds": 1.0, "source_task": "vqa", "hparams": {"calib_seed": 0},
                                               "cost": {"calib_samples": 16}}))
    from tickets.fingerprint import fingerprint_of

    Ticket.build({name: mask}, backbone="toy-uniter", fingerprint=fingerprint_of({name: mask}.items()), source="mine:vqa", method="mine",
                 source_task="vqa", target_sparsity=0.5).save(d / "sparsity-0.50.safetensors")
    df = collect_matrix(store)
    sources = sorted(set(df["source"]))
    lb = leaderboard(df, ["mine", "flow"], "imp", costs=search_costs(store, sources))
    s = with_search_facts(lb.summary, search_facts(store, sources)).set_index("method")
    assert s.loc["mine", "calibration"] == "vqa train split, 16 samples, seed 0"
    assert s.loc["flow", "calibration"] == "none" and s.loc["flow", "flops"] == "–"
    assert s.loc["mine", "flops"] == f"50%: {100 * expect:.0f}%"
    assert s.loc["mine", "evaluated_as"] == "its ticket on θ0"


def test_without_finetuning_auc_from_the_records(tmp_path):
    """Runs that scored their pruned model before fine-tuning (a head from θ0) give the 'without
    fine-tuning' AUC over the same sparsities, from dense θ0's own score at 0; others leave it NaN."""
    from test_reports_compare_leaderboard import BACKBONE, BASE, METRIC
    from test_reports_synth import write_record

    from reports.leaderboard import no_finetune_frame

    store = _store(tmp_path)
    task = "vqa"
    for source, per_sp in (("dense", {0.0: 50.0}), ("mine:vqa", {0.5: 40.0, 0.7: 30.0})):
        method, _, st = source.partition(":")
        for sp, nf in per_sp.items():
            v = BASE[source][task][sp]
            write_record(store, f"nf_{method}_{sp}", status="done", backbone=BACKBONE, source=source, method=method,
                         source_task=st, sparsity=sp, task=task, seed=7, metric=METRIC[task], value=v,
                         no_finetune={"value": nf, "weights": "θ0 ⊙ m"})
    nf = no_finetune_frame(store)
    assert len(nf) == 3 and set(nf["weights"]) == {"θ0 ⊙ m"}
    df = collect_matrix(store)
    lb = leaderboard(df, ["mine", "flow"], "imp", no_finetune=nf)
    pt = lb.per_task[(lb.per_task["method"] == "mine") & (lb.per_task["task"] == task)].iloc[0]
    sps = [round(float(x.rstrip("%")) / 100, 6) for x in pt["sparsities"].split(", ")]
    from reports.leaderboard import auc
    curve = {s: v for s, v in {0.5: 40.0, 0.7: 30.0}.items() if s in sps}
    assert math.isclose(pt["auc_no_finetune"], auc(curve, 50.0))
    s = lb.summary.set_index("method")
    assert math.isnan(s.loc["flow", "auc_no_finetune"]) and not math.isnan(s.loc["mine", "auc_no_finetune"])


def test_a_task_whose_dense_is_not_converged_is_not_ranked(tmp_path):
    """The one comparison rule ranks only tasks whose dense model is converged: dense runs at twice the
    steps that gain more than a seed std take the task out of the leaderboard and of `report --compare`."""
    from test_reports_compare_leaderboard import BACKBONE, METRIC
    from test_reports_synth import write_record

    from reports.compare import compare_frame
    from reports.store import split_convergence

    store = _store(tmp_path)
    for seed in (0, 1):
        write_record(store, f"long_gqa_{seed}", status="done", backbone=BACKBONE, source="dense", method="dense",
                     source_task="", sparsity=0.0, task="gqa", seed=seed, metric=METRIC["gqa"], value=70.0 + seed,
                     steps_factor=2)
    df, ref = split_convergence(collect_matrix(store))
    lb = leaderboard(df, ["mine", "flow"], "imp", reference=ref)
    assert set(lb.cells["task"]) == {"vqa"} and "gqa" in lb.excluded and "not converged" in lb.excluded
    assert set(leaderboard(df, ["mine", "flow"], "imp").cells["task"]) == {"vqa", "gqa"}  # unchecked: both
    cmp = compare_frame(df, "mine", reference=ref)
    assert "not converged" in cmp.attrs["excluded"]
    assert set(cmp[cmp["outcome"] != "not testable"]["task"]) <= {"vqa"}
