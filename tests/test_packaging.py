"""The built wheel installs like a package: it carries the configs and the `ticketbench` API, and the
installed `ticketbench` command runs the smoke pipeline from a directory outside the checkout.

The wheel is built from a copy of the sources (so the checkout gets no build/ or egg-info), installed
with pip into a fresh virtual environment that sees this environment's site-packages as a plain path
(torch, transformers, ... without downloading anything; the checkout and its editable install are not
visible), and run with no PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from reliability_support import ROOT, TINY, records

PACKAGES = ("bench", "tickets", "reports", "ticketbench")


def _run(*args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist,
         src, cwd=src)
    (path,) = dist.glob("ticketbench-*.whl")
    return path


def test_the_wheel_carries_the_configs_and_the_api(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {Path(n).stem for n in names if n.startswith("bench/configs/") and n.endswith(".yaml")}
    assert {"toyland", "smoke", "paper-uniter", "toyland-lxmert"} <= configs
    assert "ticketbench/__init__.py" in names
    assert "bench/tasks/tasks.yaml" in names  # the task declarations are data too
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


@pytest.mark.slow
def test_installed_wheel_runs_the_smoke_pipeline_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    # This environment's dependencies as a plain path entry: its .pth files (the editable install of
    # the checkout among them) are not processed, so `bench` can only come from the wheel.
    new_site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (new_site / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TICKETBENCH_DEBUG")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    where = _run(py, "-c", "import bench, ticketbench; print(bench.__file__); print(ticketbench.__file__)",
                 cwd=tmp_path, env=env).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where

    out = tmp_path / "smoke"
    overrides = [a for o in TINY for a in ("--set", o)]
    proc = _run(venv / "bin" / "ticketbench", "run", "smoke", "--out", out, "--quiet", "--tasks", "snli_ve",
                "--sources", "imp:snli_ve,dense", *overrides, cwd=tmp_path, env=env)
    assert f"report: {out / 'report' / 'README.md'}" in proc.stdout
    recs = records(out)
    assert recs and all(r["status"] == "done" for r in recs)
    # The public API from the installed package, on the run it just made.
    n = _run(py, "-c", f"import ticketbench; print(len(ticketbench.load_results({str(out)!r}).frame))", cwd=tmp_path, env=env)
    assert int(n.stdout.strip()) == len(recs)
