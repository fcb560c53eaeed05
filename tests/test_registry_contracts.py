"""Contracts every task, preset and method keeps, parametrised over the registries themselves: an addition
(built in, or a plugin's through the `ticketbench.tasks` / `ticketbench.presets` / `ticketbench.methods`
entry-point groups) is tested without editing a list (issue 30 item 5)."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest

from bench.backbones import PRESETS, register_preset
from bench.backbones.presets import ARCHS
from bench.core.errors import ConfigError
from bench.data.sources import TASK_SOURCES
from bench.tasks import TASKS, declare
from bench.tasks.base import HEAD_KINDS
from tickets.registry import METHODS, get_method


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name):
    spec = TASKS.get(name)
    assert spec.name == name and spec.head in HEAD_KINDS and spec.headline in spec.metrics
    assert len(spec.splits) >= 2 and all(split in spec.files for split in spec.splits)
    assert 0.0 <= spec.chance <= 100.0
    assert "toy" in spec.recipes  # every task runs on toyland
    assert isinstance(spec.version, int) and spec.version >= 1
    assert callable(spec.loader) and callable(spec.evaluator)
    assert name in TASK_SOURCES or spec.num_images == 0  # real data: where its pictures come from (if any)


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_contract(name):
    preset = PRESETS.get(name)
    assert preset.name == name and preset.arch in ARCHS and preset.image_input in ("regions", "pixels", "none")
    assert preset.weights and callable(preset.build)
    # Every task that can read this preset's images has a recipe for it (its family's or its own).
    for task in TASKS.names():
        spec = TASKS.get(task)
        if spec.head != "pretrain" and not spec.unsupported(preset.image_input):
            assert spec.recipe(preset.family, preset.name) is not None


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name):
    method = get_method(name)
    hparams = method.make_hparams()  # every field has a default
    assert type(hparams).__dataclass_params__.frozen
    assert all(f.metadata.get("help") for f in dataclasses.fields(hparams)), "declare fields with hp(default, help)"
    assert method.citation
    assert method.base is None or method.base in METHODS


def test_register_preset_is_keyword_and_checks_its_architecture(monkeypatch):
    monkeypatch.setattr(PRESETS, "_items", dict(PRESETS._items))
    base = PRESETS.get("toy-uniter")
    with pytest.raises(TypeError):
        register_preset("x", "toy", "uniter", "w", base.build)  # positional is refused
    with pytest.raises(ConfigError, match="arch 'unitr'.*did you mean 'uniter'"):
        register_preset("x", family="toy", arch="unitr", weights="w", build=base.build, **base.config)


PLUGIN = '''
from bench.backbones import PRESETS, register_preset
from bench.tasks import TASKS, declare
from bench.tasks.base import declarations

base = PRESETS.get("toy-uniter")
register_preset("toy-plugin", family="toy", arch="uniter", weights="random init (a plugin's)", build=base.build,
                **{**base.config, "num_layers": 1})
vqa = TASKS.get("vqa")
declare("plugtask", loader=vqa.loader, evaluator=vqa.evaluator,
        declaration={**declarations()["vqa"], "title": "a plugin's VQA", "version": 3})
'''


def test_a_plugin_task_and_preset_register_through_entry_points(tmp_path, monkeypatch):
    """A package outside the repository, found by its entry points only, adds a preset and a task that a
    plan then uses by name."""
    (tmp_path / "tbplugin").mkdir()
    (tmp_path / "tbplugin" / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "tbplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tbplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [ticketbench.presets]
        toy-plugin = tbplugin
        [ticketbench.tasks]
        plugtask = tbplugin
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (PRESETS, TASKS):  # a fresh lookup, undone after the test
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.delitem(sys.modules, "tbplugin", raising=False)
    monkeypatch.setitem(TASK_SOURCES, "plugtask", "coco")

    from bench.config import load_config
    from bench.plan import build_plan

    assert TASKS.get("plugtask").version == 3 and PRESETS.get("toy-plugin").config["num_layers"] == 1
    test_task_contract("plugtask")
    test_preset_contract("toy-plugin")
    plan = build_plan(load_config("smoke", ["backbone.preset=toy-plugin", "matrix.tasks=plugtask",
                                            "find.sources=plugtask"]))
    assert {c.task for c in plan.cells} == {"plugtask"} and plan.family == "toy"


def test_a_plugin_declaration_is_checked_like_tasks_yaml(monkeypatch):
    monkeypatch.setattr(TASKS, "_items", dict(TASKS._items))
    vqa = TASKS.get("vqa")
    with pytest.raises(ConfigError, match="version: expected a positive integer"):
        declare("badtask", loader=vqa.loader, evaluator=vqa.evaluator,
                declaration={**_vqa_declaration(), "version": 0})
    with pytest.raises(ConfigError, match="expected a mapping"):
        declare("badtask", loader=vqa.loader, evaluator=vqa.evaluator, declaration=["x"])


def _vqa_declaration() -> dict:
    from bench.tasks.base import declarations

    return dict(declarations()["vqa"])
