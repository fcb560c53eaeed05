"""Config system: presets, overrides, unknown keys, and pinned stage hashes."""

import dataclasses

import pytest

from bench.config import (
    Config,
    apply_overrides,
    build_config,
    load_config,
)
from bench.core.errors import ConfigError


def test_one_hashing_policy_effective_settings():
    """Every key hashes effective settings: an explicit default is the default, a changed setting is a
    new plan, and where or how fast a plan runs (executor, workers, device) is not part of it."""
    from bench.plan import build_plan

    base = build_plan(load_config("smoke"))
    assert build_plan(load_config("smoke", ["finetune.dev_limit=32", "world.seed=0"])).hash == base.hash
    assert build_plan(load_config("smoke", ["matrix.workers=2", "matrix.executor=ray",
                                            "backbone.device=cpu"])).hash == base.hash
    assert build_plan(load_config("smoke", ["finetune.steps=7"])).hash != base.hash
    assert build_plan(load_config("smoke", ["finetune.steps=7"])).theta0_key == base.theta0_key
    assert build_plan(load_config("smoke", ["pretrain.lr=0.5"])).theta0_key != base.theta0_key


def test_recipe_fields_left_at_none_take_the_recipe():
    from bench.plan import build_plan
    from bench.tasks import TASKS

    plan = build_plan(load_config("toyland"))
    assert plan.finetune_settings("vqa", 3) == TASKS.get("vqa").recipe("toy").override(seed=3)
    tuned = build_plan(load_config("toyland", ["finetune.lr=1e-4", "finetune.betas=0.9,0.999"]))
    s = tuned.finetune_settings("vqa", 0)
    assert s.lr == 1e-4 and s.betas == (0.9, 0.999) and s.steps == TASKS.get("vqa").recipe("toy").steps
    with pytest.raises(ConfigError, match="finetune.steps"):
        load_config("toyland", ["finetune.steps=abc"])
    assert load_config("toyland", ["finetune.steps=none"]).finetune.steps is None


def test_method_hyperparameters_from_the_config():
    from bench.plan import build_plan

    cfg = load_config("smoke", ["find.hparams.imp.mode=ladder", "find.hparams.imp.prune_fraction=0.25"])
    assert cfg.find.method_hparams("imp") == {"mode": "ladder", "prune_fraction": 0.25}
    assert build_plan(cfg).search("imp:vqa").hparams_dict["prune_fraction"] == 0.25
    assert build_plan(cfg).hash != build_plan(load_config("smoke")).hash
    with pytest.raises(ConfigError, match="unknown hyperparameter 'prune_frac'"):
        build_plan(load_config("smoke", ["find.hparams.imp.prune_frac=0.2"]))


def test_every_field_has_help():
    for section in dataclasses.fields(Config):
        if section.name == "name":
            continue
        for f in dataclasses.fields(section.default_factory):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help"


def test_presets_load():
    for name in ("toyland", "smoke", "toyland-lxmert", "toyland-vilt"):
        cfg = load_config(name)
        assert cfg.name == name
    assert load_config("smoke").world.scale == "smoke"


def test_overrides_are_typed():
    cfg = apply_overrides(Config(), ["finetune.steps=12", "matrix.sparsities=0.5,0.7", "finetune.bf16=false"])
    assert cfg.finetune.lr is None
    assert cfg.finetune.steps == 12
    assert cfg.matrix.sparsities == (0.5, 0.7)
    assert cfg.finetune.bf16 is False
    # A list may be written as in the YAML file too.
    assert apply_overrides(Config(), ["matrix.sparsities=[0.5, 0.7]"]).matrix.sparsities == (0.5, 0.7)


@pytest.mark.parametrize(
    "override, hint",
    [("finetune.stepz=3", "finetune.steps"), ("matrx.seeds=2", "matrix.seeds"), ("steps=3", "")],
)
def test_unknown_override_suggests(override, hint):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Config(), [override])
    assert "unknown key" in str(e.value) and hint in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_yaml_key_suggests(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("matrix:\n  sparsity: [0.5]\n")
    with pytest.raises(ConfigError, match=r"did you mean 'matrix.sparsities'"):
        load_config(str(p))


def test_wrong_type_is_one_line():
    with pytest.raises(ConfigError, match="expected int"):
        build_config({"finetune": {"steps": "many"}})


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(str(p))


def test_pretrain_phases_split_the_steps_itm_first():
    from bench.plan import build_plan

    cfg = load_config("toyland")
    first, mix = build_plan(cfg).phases
    assert first.objectives == (("itm", 1.0),) and mix.objectives == (("itm", 2.0), ("mlm", 1.0), ("mrm", 1.0))
    assert first.steps + mix.steps == cfg.pretrain.steps
    assert first.steps == round(cfg.pretrain.first_fraction * cfg.pretrain.steps)

    def phases(*overrides):
        return [(p.objectives, p.steps) for p in build_plan(apply_overrides(cfg, list(overrides))).phases]

    assert phases("pretrain.first_fraction=0") == [(mix.objectives, cfg.pretrain.steps)]
    assert phases("pretrain.first_objectives=") == [(mix.objectives, cfg.pretrain.steps)]
    assert phases("pretrain.first_fraction=1") == [(first.objectives, cfg.pretrain.steps)]
    with pytest.raises(ConfigError, match=r"pretrain.first_fraction: expected a fraction in \[0, 1\], found 1.5"):
        phases("pretrain.first_fraction=1.5")


def test_pretrain_key_follows_effective_settings_not_only_overrides(monkeypatch):
    """A changed default is a new θ0, and so is a new toyland format: never served from cache."""
    import bench.config as config_module
    import bench.data.toyland.world as world_module
    from bench.plan import build_plan

    cfg = load_config("smoke")
    before = build_plan(cfg).theta0_key
    monkeypatch.setattr(world_module, "VERSION", world_module.VERSION + 1)
    assert build_plan(cfg).theta0_key != before
    monkeypatch.undo()
    changed = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, lr=0.5))
    monkeypatch.setattr(config_module.PretrainConfig.__dataclass_fields__["lr"], "default", 0.5)
    assert build_plan(changed).theta0_key != before


def test_a_world_of_another_format_version_is_refused(tmp_path):
    import json

    from bench.core.errors import TicketbenchError
    from bench.plan import build_plan
    from bench.runner.stages import stage_world
    from bench.runner.study import Study

    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "MANIFEST.json").write_text(json.dumps({"seed": 0, "scale": "smoke", "version": 1}))
    with pytest.raises(TicketbenchError, match="format version 1; this ticketbench writes version 2"):
        stage_world(build_plan(load_config("smoke")), Study(load_config("smoke"), tmp_path), quiet=True)
