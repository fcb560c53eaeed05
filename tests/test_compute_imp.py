"""IMP on real (toy) training: late rewinding carried by the tickets, and a pre-empted search that
resumes after its last finished round."""

from __future__ import annotations

import pytest
import torch

import tickets
from bench.core.errors import TicketError
from tickets import Ticket, TicketStore
from tickets.testing import ToyTransformer, toy_context

LADDER = (0.3, 0.5, 0.7)


def _imp(ctx):
    return tickets.methods.get("imp")(ctx, {"mode": "ladder"})


def test_late_rewinding_tickets_start_the_matrix_from_theta_k(tmp_path):
    store = TicketStore(tmp_path)
    ctx = toy_context(rewind_step=2, sparsities=LADDER, store=store)
    found = _imp(ctx)
    theta_k = found[0].rewind_weights
    assert any(not torch.equal(theta_k[n], ctx.theta0[n]) for n in ctx.theta0)  # θk ≠ θ0 on this toy
    assert all(t.rewind_weights is theta_k or all(torch.equal(t.rewind_weights[n], theta_k[n]) for n in theta_k)
               for t in found)
    assert len(list(tmp_path.glob("imp__toy/rewind-*.safetensors"))) == 1  # one θk for every round

    ticket = Ticket.load(store.path("imp:toy", 0.5))
    assert ticket.metadata["rewind"]["step"] == 2
    assert ticket.content_hash != tickets.ticket.masks_content_hash(ticket.masks)  # run ids cover θk
    model = ToyTransformer()  # θ0, as the matrix builds it
    ticket.apply(model)
    for n, p in model.prunable_parameters():
        assert torch.equal(p.detach(), theta_k[n] * ticket.masks[n])


def test_a_tampered_or_missing_rewind_file_is_refused(tmp_path):
    store = TicketStore(tmp_path)
    _imp(toy_context(rewind_step=2, sparsities=(0.5,), store=store))
    path = store.path("imp:toy", 0.5)
    (rewind,) = tmp_path.glob("imp__toy/rewind-*.safetensors")
    from safetensors.torch import load_file, save_file

    w = load_file(str(rewind))
    name = next(iter(w))
    w[name] = w[name] + 1.0
    save_file(w, str(rewind))
    with pytest.raises(TicketError, match="do not match the hash"):
        Ticket.load(path).apply(ToyTransformer())
    rewind.unlink()
    with pytest.raises(TicketError, match="not found beside the ticket"):
        Ticket.load(path).apply(ToyTransformer())


class Preempted(Exception):
    pass


@pytest.mark.parametrize("rewind_step", [0, 2])
def test_a_preempted_search_resumes_after_its_last_finished_round(tmp_path, rewind_step):
    reference = _imp(toy_context(rewind_step=rewind_step, sparsities=LADDER))

    store = TicketStore(tmp_path)
    ctx = toy_context(rewind_step=rewind_step, sparsities=LADDER, store=store)
    calls = []
    train = ctx.train

    def preempted_in_round_2(start, masks):
        calls.append(1)
        if len(calls) == 2:
            raise Preempted  # killed while training round 2: round 1 is stored, round 2 is not
        return train(start, masks)

    ctx.train = preempted_in_round_2
    with pytest.raises(Preempted):
        _imp(ctx)
    assert store.path("imp:toy", 0.3).exists() and not store.path("imp:toy", 0.5).exists()

    resumed = toy_context(rewind_step=rewind_step, sparsities=LADDER, store=store)
    rounds_trained = []
    train2 = resumed.train
    resumed.train = lambda start, masks: (rounds_trained.append(1), train2(start, masks))[1]
    found = _imp(resumed)
    assert len(rounds_trained) == len(LADDER) - 1  # round 1 was not trained again
    assert [t.content_hash for t in found] == [t.content_hash for t in reference]


def test_stored_rounds_of_another_search_are_not_reused(tmp_path):
    store = TicketStore(tmp_path)
    _imp(toy_context(sparsities=LADDER, store=store, seed=0))
    ctx = toy_context(sparsities=LADDER, store=store, seed=1)  # same store, another seed
    trained = []
    train = ctx.train
    ctx.train = lambda start, masks: (trained.append(1), train(start, masks))[1]
    _imp(ctx)
    assert len(trained) == len(LADDER)
