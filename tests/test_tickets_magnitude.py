import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from bench.core.errors import TicketError
from tickets import global_magnitude_masks, layerwise_magnitude_masks


def _weights(seed=0, shapes=((8, 6), (5, 7), (11,))):
    g = torch.Generator().manual_seed(seed)
    return {f"w{i}": torch.randn(s, generator=g) for i, s in enumerate(shapes)}


def _torch_global(weights, s):
    mods = [nn.Module() for _ in weights]
    for m, w in zip(mods, weights.values()):
        m.weight = nn.Parameter(w.clone())
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured, amount=s)
    return {n: m.weight_mask.bool() for n, m in zip(weights, mods)}


@pytest.mark.parametrize("s", [0.0, 0.1, 0.33, 0.5, 0.77, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_global_equals_torch_prune_on_untied_data(s, seed):
    w = _weights(seed)
    ours, ref = global_magnitude_masks(w, s), _torch_global(w, s)
    for n in w:
        assert ours[n].dtype == torch.bool and torch.equal(ours[n], ref[n])


def test_layerwise_equals_torch_prune_per_tensor():
    w = _weights(3)
    ours = layerwise_magnitude_masks(w, 0.4)
    for n, t in w.items():
        m = nn.Module()
        m.weight = nn.Parameter(t.clone())
        prune.l1_unstructured(m, "weight", amount=0.4)
        assert torch.equal(ours[n], m.weight_mask.bool())


def test_exact_count_and_deterministic_ties():
    # Every magnitude tied: exactly round(s*N) pruned, the lowest flat indices first.
    w = {"a": torch.ones(3, 4), "b": -torch.ones(10)}
    masks = global_magnitude_masks(w, 0.5)
    flat = torch.cat([masks["a"].flatten(), masks["b"].flatten()])
    assert int((~flat).sum()) == round(0.5 * 22)
    assert not flat[:11].any() and flat[11:].all()
    # Partial ties at the threshold.
    w = {"a": torch.tensor([0.1, 0.5, 0.5, 0.5, 0.9]), "b": torch.tensor([0.5, 0.2])}
    m = global_magnitude_masks(w, 3 / 7)  # prunes 0.1, 0.2 and the first 0.5
    assert m["a"].tolist() == [False, False, True, True, True] and m["b"].tolist() == [True, False]


def test_sparsity_rounding_matches_round():
    w = {"a": torch.randn(1001)}
    for s in (0.1, 0.25, 0.5005, 0.9):
        assert int((~global_magnitude_masks(w, s)["a"]).sum()) == round(s * 1001)


def test_imp_current_mask_never_revives():
    w = _weights(5)
    first = global_magnitude_masks(w, 0.3)
    # After training, some pruned weights could have grown large: they must stay pruned.
    trained = {n: t.clone() for n, t in w.items()}
    for n in trained:
        trained[n][~first[n]] = 100.0
    second = global_magnitude_masks(trained, 0.5, current=first)
    total = sum(t.numel() for t in w.values())
    assert sum(int((~m).sum()) for m in second.values()) == round(0.5 * total)
    for n in w:
        assert not (second[n] & ~first[n]).any()
    with pytest.raises(TicketError, match="already pruned"):
        global_magnitude_masks(trained, 0.1, current=first)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_sparsity_out_of_range(bad):
    with pytest.raises(TicketError) as e:
        global_magnitude_masks(_weights(), bad)
    assert "\n" not in str(e.value)
    with pytest.raises(TicketError):
        layerwise_magnitude_masks(_weights(), bad)


def test_nonfinite_weights_refused():
    w = _weights()
    w["w1"][0, 0] = float("nan")
    with pytest.raises(TicketError, match="w1"):
        global_magnitude_masks(w, 0.5)


def test_large_scale_smoke():
    # A few million weights: exact count (speed is measured in benchmarks, not asserted here).
    g = torch.Generator().manual_seed(0)
    w = {f"l{i}": torch.randn(512, 1024, generator=g) for i in range(4)}
    m = global_magnitude_masks(w, 0.7)
    assert sum(int((~x).sum()) for x in m.values()) == round(0.7 * 4 * 512 * 1024)
