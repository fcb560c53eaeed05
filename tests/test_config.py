"""Config system: presets, overrides, unknown keys, and pinned stage hashes."""

import dataclasses

import pytest

from bench.config import (
    Config,
    FinetuneConfig,
    MatrixConfig,
    apply_overrides,
    build_config,
    config_hash,
    load_config,
)
from bench.core.errors import ConfigError


def test_defaults_hash_is_pinned():
    # Pinned: changing these means every stored result would be recomputed.
    assert config_hash(FinetuneConfig()) == config_hash(FinetuneConfig())
    assert config_hash(FinetuneConfig()) == "13f925f039aa"
    assert config_hash(FinetuneConfig(steps=50)) == "4e5b46b98d78"
    assert config_hash(MatrixConfig(seeds=3), "x") == "02e390f723db"


def test_fields_left_at_default_do_not_change_the_hash():
    explicit = FinetuneConfig(steps=0, lr=0.0, warmup=0.1)  # all equal to the defaults
    assert config_hash(explicit) == config_hash(FinetuneConfig())
    assert config_hash(FinetuneConfig(lr=1e-4)) != config_hash(FinetuneConfig())


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
    assert cfg.finetune.steps == 12
    assert cfg.matrix.sparsities == (0.5, 0.7)
    assert cfg.finetune.bf16 is False


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
    from bench.runner.stages import pretrain_phases

    cfg = load_config("toyland")
    (first, n1), (mix, n2) = pretrain_phases(cfg)
    assert first == cfg.pretrain.first_objectives == "itm:1" and mix == cfg.pretrain.objectives
    assert n1 + n2 == cfg.pretrain.steps and n1 == round(cfg.pretrain.first_fraction * cfg.pretrain.steps)
    assert pretrain_phases(apply_overrides(cfg, ["pretrain.first_fraction=0"])) == [(mix, cfg.pretrain.steps)]
    assert pretrain_phases(apply_overrides(cfg, ["pretrain.first_objectives="])) == [(mix, cfg.pretrain.steps)]
    assert pretrain_phases(apply_overrides(cfg, ["pretrain.first_fraction=1"])) == [(first, cfg.pretrain.steps)]
    with pytest.raises(ConfigError, match=r"pretrain.first_fraction: expected a fraction in \[0, 1\], found 1.5"):
        pretrain_phases(apply_overrides(cfg, ["pretrain.first_fraction=1.5"]))


def test_pretrain_hash_follows_effective_settings_not_only_overrides(monkeypatch, tmp_path):
    """A changed default is a new θ0, and so is a new toyland format: never served from cache."""
    import bench.config as config_module
    import bench.data.toyland.world as world_module
    from bench.runner.stages import pretrain_hash
    from bench.runner.study import Study

    study = Study(load_config("smoke"), tmp_path)
    before = pretrain_hash(study)
    monkeypatch.setattr(world_module, "VERSION", world_module.VERSION + 1)
    assert pretrain_hash(study) != before
    monkeypatch.undo()
    changed = dataclasses.replace(study.cfg, pretrain=dataclasses.replace(study.cfg.pretrain, lr=0.5))
    monkeypatch.setattr(config_module.PretrainConfig.__dataclass_fields__["lr"], "default", 0.5)
    assert pretrain_hash(Study(changed, tmp_path)) != before


def test_a_world_of_another_format_version_is_refused(tmp_path):
    import json

    from bench.core.errors import TicketbenchError
    from bench.runner.stages import stage_world
    from bench.runner.study import Study

    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "MANIFEST.json").write_text(json.dumps({"seed": 0, "scale": "smoke", "version": 1}))
    with pytest.raises(TicketbenchError, match="format version 1; this ticketbench writes version 2"):
        stage_world(Study(load_config("smoke"), tmp_path), quiet=True)
