"""Small things users hit: --quiet still says where results are, a closed pipe ends quietly, output files
get the usual permissions, a local Ray instance listens on loopback only, and tickets leave ticketbench
(applied to a user's transformers model in three lines; exported as a transformers folder)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from reliability_support import ROOT, assert_one_line_error, cli_here

from bench.core.io import atomic_write_text


# ---- --quiet and pipes ----------------------------------------------------------------------------
def test_quiet_still_prints_the_output_directory_and_the_report(tmp_path, capsys):
    from test_reports_synth import make_store

    out = make_store(tmp_path / "out")
    proc = cli_here("run", "smoke", "--out", str(out), "--only", "report", "--quiet", "--set", "matrix.tasks=vqa,gqa",
                    "--set", "find.sparsities=0.5,0.7", "--set", "matrix.seeds=2", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("ticketbench: smoke") and lines[0].endswith(f"-> {out}"), lines
    assert lines[1] == f"report: {out / 'report' / 'README.md'}"
    assert (out / "report" / "README.md").exists()


@pytest.mark.parametrize("command", ["tasks", "presets"])
def test_a_closed_pipe_ends_quietly(command):
    # `ticketbench tasks | head -0`: the reader is gone before the first write.
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "bench", command], stdout=write, stderr=subprocess.PIPE, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    os.close(write)
    assert proc.stderr == ""  # no "error: Broken pipe", no "Exception ignored"
    assert proc.returncode == 141  # 128 + SIGPIPE, as for `cat`


# ---- permissions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomically_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "record.json", "{}\n")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


# ---- Ray --------------------------------------------------------------------------------------------
@pytest.mark.ray
def test_local_ray_instance_listens_on_loopback_only(tmp_path):
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    from runner_fakes import counting_pair

    from bench.runner.executors.ray import RayBackend
    from bench.runner.store import RunStore

    backend = RayBackend(counting_pair, RunStore(tmp_path), workers=2, ray_address="")
    try:
        listening = {}
        for proc in psutil.Process().children(recursive=True):
            try:
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        listening.setdefault(proc.name(), set()).add(conn.laddr.ip)
            except psutil.Error:  # a worker that exited meanwhile
                continue
    finally:
        backend.close()
    assert any("gcs" in name for name in listening), listening  # we did see Ray's services
    exposed = {n: ips for n, ips in listening.items() if ips - {"127.0.0.1", "::1", "::ffff:127.0.0.1"}}
    assert exposed == {}, f"Ray services listening beyond loopback: {exposed}"


# ---- tickets outside ticketbench --------------------------------------------------------------------
@pytest.fixture
def toy(tmp_path):
    """A toy-uniter θ0 in a run-like store (`<out>/pretrain/<h>/` with DONE) and a 60 % magnitude ticket
    of it at `<out>/tickets/<h>/imp__vqa/sparsity-0.60.safetensors`."""
    from bench.backbones import create_backbone
    from bench.core.io import file_hash
    from tickets import Ticket, global_magnitude_masks

    out = tmp_path / "out"
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["a", "red", "cube", "is", "left", "of", "the"]) + "\n")
    torch.manual_seed(0)
    backbone = create_backbone("toy-uniter", vocab_path=vocab, feat_dim=8)
    theta0 = backbone.save(out / "pretrain" / "h0")
    (theta0 / "DONE").write_text(file_hash(theta0 / "model.safetensors") + "\n")
    named = backbone.prunable_parameters()
    masks = global_magnitude_masks({n: p.detach() for n, p in named}, 0.6)
    path = out / "tickets" / "h1" / "imp__vqa" / "sparsity-0.60.safetensors"
    Ticket.build(masks, backbone=backbone.preset, fingerprint=backbone.fingerprint(), source="imp:vqa",
                 method="imp", target_sparsity=0.6).save(path)
    return backbone, path, masks


def test_a_ticket_applies_to_a_users_transformers_model_in_three_lines(toy):
    from transformers import BertForSequenceClassification

    from bench.backbones.uniter import bert_config

    backbone, path, masks = toy
    model = BertForSequenceClassification(bert_config(backbone.config))  # the user's own model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    # The three lines of the README:
    import ticketbench
    ticket = ticketbench.load_ticket(path)
    ticketbench.apply_ticket(ticket, model)

    for name, mask in masks.items():
        w = dict(model.named_parameters())[f"bert.{name}"]
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))
        assert torch.equal(w[mask], before[f"bert.{name}"][mask])
    untouched = [n for n in before if not any(n == f"bert.{m}" for m in masks)]
    assert all(torch.equal(dict(model.named_parameters())[n], before[n]) for n in untouched)

    # Training it with the README's enforcer keeps the pruned weights at zero.
    from tickets import MaskEnforcer

    params = ticketbench.apply_ticket(ticket, model)  # applying again changes nothing
    enforcer = MaskEnforcer(list(params.items()), ticket.masks)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([1])).loss.backward()
    enforcer.mask_grads()
    opt.step()
    for name, mask in masks.items():
        w = dict(model.named_parameters())[f"bert.{name}"]
        assert not w[~mask].any() and not torch.equal(w[mask], before[f"bert.{name}"][mask])


def test_a_ticket_for_another_architecture_leaves_the_model_untouched(toy):
    from transformers import BertConfig, BertModel

    import ticketbench
    from bench.core.errors import TicketError

    _, path, _ = toy
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(TicketError, match=r"ticket mask 'encoder.layer.0.attention.self.query.weight' .* fits no "
                                          r"parameter of BertModel") as e:
        ticketbench.apply_ticket(path, model)
    assert "\n" not in str(e.value)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_tickets_export_writes_theta0_times_mask_as_a_transformers_folder(toy, tmp_path, capsys):
    from transformers import AutoModel, AutoTokenizer

    backbone, path, masks = toy
    dest = tmp_path / "exported"
    proc = cli_here("tickets", "export", str(path), "--out", str(dest), capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert str(dest) in proc.stdout
    model = AutoModel.from_pretrained(str(dest), local_files_only=True)
    assert type(model).__name__ == "BertModel"
    exported = dict(model.named_parameters())
    for name, p in backbone.named_parameters():
        if name.split(".")[0] not in ("embeddings", "encoder", "pooler"):
            continue  # the image embedder is not part of a BertModel
        expected = p.detach() * masks[name] if name in masks else p.detach()
        assert torch.equal(exported[name].detach(), expected), name
    assert AutoTokenizer.from_pretrained(str(dest), local_files_only=True)("a red cube")["input_ids"]
    assert all(f.stat().st_mode & 0o044 == 0o044 for f in [dest, *dest.iterdir()])  # readable by others
    # A second export to the same folder is refused, and the first stays intact.
    files = sorted(p.name for p in dest.iterdir())
    assert_one_line_error(cli_here("tickets", "export", str(path), "--out", str(dest), capsys=capsys),
                          "not an empty directory")
    assert sorted(p.name for p in dest.iterdir()) == files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exported.")]  # no temp folder left
