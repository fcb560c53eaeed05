"""Identity that survives upgrades (bench/core/identity.py): keys hash what differs from the defaults, so
a new field at its default — in TrainSettings, a config section or a method's hyperparameters — changes
no θ0 key, search id, run id or plan hash. The canonical keys of two shipped plans are pinned: a change
that re-keys them (and so would make every user's store recompute) fails here first."""

from __future__ import annotations

import dataclasses

import pytest

from bench.config import SECTIONS, Config, load_config, to_dict
from bench.core.identity import KEY_SCHEMA, dataclass_identity, non_default
from bench.core.settings import TrainSettings
from bench.plan import build_plan
from bench.runner.finetune import pair_identity
from bench.runner.pairs import PairSpec
from bench.tasks import TASKS
from tickets.registry import METHODS

THETA0, DATA = "t" * 16, "d" * 16
# Re-pin only on purpose (and say so in the release notes: stores made before recompute). Changing the
# default of a hashed field is such a purpose too: bump KEY_SCHEMA with it.
PINNED = {
    # toyland re-pinned on purpose with the powered default (issue 26: world scale study, claims on NLVR2).
    "toyland": {"plan": "b30142ba7863", "theta0": "1c7b48a16bf3", "search": "febaf77a02a3", "run": "cea5271eab0f"},
    "smoke": {"plan": "fd7e8436be1e", "theta0": "06edd5927ae1", "search": "87837e6c4634", "run": "2e8e01c72156"},
}


def keys(name: str) -> dict[str, str]:
    """The canonical keys of a shipped plan: plan hash, θ0 key, its first search's id and the run id of
    its first task's dense run, with fixed θ0 and data digests (no data is read)."""
    plan = build_plan(load_config(name))
    task = plan.config.matrix.tasks[0]
    spec = TASKS.get(task)
    settings = plan.finetune_settings(task, 0)
    pair = PairSpec(plan.config.backbone.preset, "dense", "dense", "", 0.0, task, 0, None, None, THETA0,
                    spec.splits[1], data_hash=DATA, config=pair_identity(plan, settings, "pretrain/x"),
                    task_version=spec.version)
    return {"plan": plan.hash, "theta0": plan.theta0_key, "search": plan.search_id(plan.searches[0], THETA0, DATA),
            "run": pair.run_id}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_canonical_keys_are_pinned(name):
    assert keys(name) == PINNED[name]


def _extend(cls: type, name: str = "new_knob", default=0.0) -> type:
    """`cls` as a release that adds one field at a default that changes nothing would make it."""
    return dataclasses.make_dataclass(cls.__name__, [(name, type(default), dataclasses.field(default=default))],
                                      bases=(cls,), frozen=True)


def _with_field(obj):
    return _extend(type(obj))(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})


def test_a_new_defaulted_field_changes_no_key(monkeypatch):
    import bench.plan as plan_mod

    before = {name: keys(name) for name in PINNED}
    # TrainSettings (the pair's, the search's, pre-training's) grows a field.
    for attr in ("finetune_settings", "pretrain_settings"):
        original = getattr(plan_mod.Plan, attr)
        monkeypatch.setattr(plan_mod.Plan, attr, lambda self, *a, _f=original, **k: _with_field(_f(self, *a, **k)))
    # Every config section grows a field (config and defaults alike).
    original_to_dict = plan_mod.to_dict
    monkeypatch.setattr(plan_mod, "to_dict", lambda cfg: {k: {**v, "new_knob": 0.0} if k in SECTIONS else v
                                                           for k, v in original_to_dict(cfg).items()})
    plan_mod._default_sections.cache_clear()
    # Every method's hyperparameters grow a field.
    for name, method in list(METHODS.items()):
        monkeypatch.setitem(METHODS._items, name, dataclasses.replace(method, hparams_cls=_extend(method.hparams_cls)))
    try:
        assert build_plan(load_config("smoke")).searches[0].hparams[-1] == ("new_knob", 0.0)  # the field is there
        assert {name: keys(name) for name in PINNED} == before
    finally:
        monkeypatch.undo()
        plan_mod._default_sections.cache_clear()


def test_a_changed_setting_still_changes_every_key_it_enters():
    base = keys("smoke")
    plan = build_plan(load_config("smoke", ["finetune.lr=0.00123"]))
    assert plan.hash != base["plan"] and plan.theta0_key == base["theta0"]  # θ0 does not fine-tune
    assert build_plan(load_config("smoke", ["pretrain.lr=0.00123"])).theta0_key != base["theta0"]


def test_non_default_keeps_what_differs():
    assert non_default({"a": 1, "b": 2, "c": {"x": 1, "y": 2}, "new": 3}, {"a": 1, "b": 0, "c": {"x": 1, "y": 0}}) \
        == {"b": 2, "c": {"y": 2}, "new": 3}
    assert dataclass_identity(TrainSettings()) == {}
    assert dataclass_identity(TrainSettings(lr=0.5)) == {"lr": 0.5}
    assert KEY_SCHEMA >= 2


def current_defaults() -> dict[str, dict]:
    """The defaults of every field a key may hash: TrainSettings, the config sections (less what never
    changes a number) and every built-in method's hyperparameters."""
    from bench.plan import EXECUTION_FIELDS

    out = {"TrainSettings": dataclasses.asdict(TrainSettings())}
    out.update({f"config.{s}": {k: v for k, v in d.items() if k not in EXECUTION_FIELDS.get(s, ())}
                for s, d in to_dict(Config()).items() if s in SECTIONS and s != "report"})
    out.update({f"method.{n}": dataclasses.asdict(m.make_hparams()) for n, m in METHODS.items()})
    return out


# Keys omit a field at its default, so a changed default would change numbers under an unchanged key.
# Change one only together with KEY_SCHEMA (and re-pin PINNED above). New fields need no entry here.
DEFAULTS = {"TrainSettings": {"steps": 100,
                              "batch_size": 32,
                              "batch_tokens": None,
                              "lr": 0.0001,
                              "warmup": 0.1,
                              "weight_decay": 0.01,
                              "betas": (0.9, 0.98),
                              "grad_clip": 2.0,
                              "grad_accum": 1,
                              "head_lr_mult": 1.0,
                              "seed": 0,
                              "bf16": True,
                              "adv_steps": 0,
                              "adv_epsilon": 0.01,
                              "adv_step_size": 0.001},
            "config.world": {"source": "toyland",
                             "scale": "default",
                             "seed": 0,
                             "data_root": "",
                             "features": "",
                             "images": [],
                             "task_images": [],
                             "conf_th": 0.2,
                             "min_bb": 10,
                             "max_bb": 100},
            "config.backbone": {"preset": "toy-uniter", "checkpoint": "", "tokenizer": ""},
            "config.pretrain": {"steps": 2500,
                                "batch_size": 32,
                                "batch_tokens": None,
                                "lr": 0.001,
                                "warmup": 0.1,
                                "weight_decay": 0.01,
                                "betas": [0.9, 0.98],
                                "grad_clip": 2.0,
                                "grad_accum": 1,
                                "head_lr_mult": 1.0,
                                "seed": 0,
                                "bf16": True,
                                "adv_steps": 0,
                                "adv_epsilon": 0.01,
                                "adv_step_size": 0.001,
                                "objectives": "itm:2,mlm:1,mrm:1",
                                "first_objectives": "itm:1",
                                "first_fraction": 0.6,
                                "tag_fraction": 0.8,
                                "mask_prob": 0.15},
            "config.find": {"sources": ["vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "pretrain"],
                            "one_shot": ["omp:vqa", "pretrained_magnitude"],
                            "sparsities": [0.3, 0.5, 0.7, 0.9],
                            "hparams": [],
                            "rewind_step": 0,
                            "steps": None,
                            "adv_steps": None,
                            "include": [],
                            "exclude": [],
                            "plugins": [],
                            "seed": 0},
            "config.finetune": {"steps": None,
                                "batch_size": None,
                                "batch_tokens": None,
                                "lr": None,
                                "warmup": None,
                                "weight_decay": None,
                                "betas": None,
                                "grad_clip": None,
                                "grad_accum": None,
                                "head_lr_mult": None,
                                "bf16": None,
                                "adv_steps": None,
                                "adv_epsilon": None,
                                "adv_step_size": None,
                                "eval_batch_size": 64,
                                "max_text_len": 40,
                                "dev_limit": 0},
            "config.matrix": {"tasks": ["vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr"],
                              "sources": [],
                              "sparsities": [],
                              "seeds": 1,
                              "dense_seeds": 1,
                              "convergence_check": False,
                              "baselines": ["random"],
                              "controls": ["reinit:pretrain", "shuffle:pretrain"],
                              "control_sparsities": [0.5]},
            "method.reinit": {"init": "auto", "std": 0.02},
            "method.shuffle": {},
            "method.early_bird": {"interval": 5, "threshold": 0.1, "patience": 3, "scope": "global"},
            "method.grasp": {"score_batches": 1, "fd_step": 0.0001, "scope": "global"},
            "method.imp": {"mode": "ladder", "prune_fraction": 0.1, "rounds": 0},
            "method.layerwise_magnitude": {"trained": True},
            "method.lr_rewind": {"mode": "ladder", "prune_fraction": 0.1, "rounds": 0},
            "method.movement": {"gradual": False, "scope": "global"},
            "method.omp": {"scope": "global"},
            "method.pretrained_magnitude": {"scope": "global"},
            "method.random": {"scope": "global"},
            "method.random_matched": {},
            "method.snip": {"score_batches": 1, "scope": "global"},
            "method.synflow": {"iterations": 100, "scope": "global"}}


def test_defaults_of_hashed_fields_are_pinned():
    now = current_defaults()
    changed = [f"{group}.{k}: pinned {v!r}, now {now.get(group, {}).get(k, '(gone)')!r}"
               for group, fields in DEFAULTS.items() for k, v in fields.items() if now.get(group, {}).get(k, ...) != v]
    assert not changed, "defaults of hashed fields changed (bump KEY_SCHEMA, re-pin):\n" + "\n".join(changed)


def test_commit_is_unknown_without_git_and_never_fails(monkeypatch):
    import subprocess

    from bench.core import provenance

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    provenance.git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert provenance.git_commit() == "unknown"
        assert provenance.package_versions()["commit"] == "unknown"
    finally:
        provenance.git_commit.cache_clear()


def test_task_version_enters_the_run_id():
    plan = build_plan(load_config("smoke"))
    task = plan.config.matrix.tasks[0]
    pair = PairSpec(plan.config.backbone.preset, "dense", "dense", "", 0.0, task, 0, None, None, THETA0,
                    TASKS.get(task).splits[1], data_hash=DATA, config={})
    bumped = dataclasses.replace(pair, task_version=2)
    assert bumped.run_id != pair.run_id and bumped.identity()["task_version"] == 2


if __name__ == "__main__":  # re-pinning on purpose: `python -m tests.test_identity` prints today's values
    import pprint

    pprint.pprint({name: keys(name) for name in PINNED}, width=115)
    pprint.pprint(current_defaults(), width=115, sort_dicts=False)
