"""Adaptation scores as pure functions, against values computed independently: the gradient
scores from plain autograd on the same batches, Spectrum's SNR from numpy, the probe's ΔW from
its factors; and the registry keeps the adaptation locators out of the circuit's candidates."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sumcircuit.analysis.adapt.config import AdaptConfig
from sumcircuit.analysis.adapt.gradients import gradient_scores, rank_energy
from sumcircuit.analysis.adapt.result import AdaptResult
from sumcircuit.analysis.adapt.spectrum import layer_snr, spectrum_snr
from sumcircuit.analysis.adapt.targets import Target, lora_matrices, per_layer, weights
from sumcircuit.analysis.causal.faithfulness import FaithfulnessConfig
from sumcircuit.analysis.locate.registry import LOCATORS, names
from sumcircuit.data.prompting import IGNORE_INDEX, Batch
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
ADAPT = ("rgn", "fisher", "grad-energy", "probe-norm", "probe-act", "spectrum-snr")


def _batch(seed: int, lengths: list[int], summary: int) -> Batch:
    """Random tokens, right-padded to the longest; the last ``summary`` tokens of each row are
    its summary (labels at the positions that predict them)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(0, 50000, (len(lengths), width), generator=g)
    attention = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = torch.full((len(lengths), width), IGNORE_INDEX)
    for row, n in enumerate(lengths):
        attention[row, :n] = 1
        labels[row, n - summary - 1 : n - 1] = ids[row, n - summary : n]
    ids[attention == 0] = 50256
    summ = labels != IGNORE_INDEX
    return Batch(ids, attention, attention.bool() & ~summ, summ, labels)


def _autograd_grads(model, batch: Batch, matrices: list[torch.nn.Parameter]) -> list[np.ndarray]:
    """The gradient of the mean summary-token cross-entropy, from the full model's logits."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    where = batch.labels != IGNORE_INDEX
    loss = F.cross_entropy(logits[where].float(), batch.labels[where])
    return [g.double().numpy() for g in torch.autograd.grad(loss, matrices)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_gradient_scores_match_plain_autograd(arch):
    model = tiny_model(arch, seed=3, attn_implementation="sdpa", n_layers=2, init_std=0.2)
    targets = lora_matrices(Arch.from_model(model), ("q", "k", "v", "o"))
    mats = weights(model, targets)
    batches = [_batch(0, [12, 9, 7], 3), _batch(1, [10, 10], 4)]
    rank = 2
    got = gradient_scores(model, mats, batches, rank, progress=False)

    per_batch = [_autograd_grads(model, b, mats) for b in batches]
    w = [m.detach().double().numpy() for m in mats]
    rgn = np.mean(
        [[np.linalg.norm(g[i]) / np.linalg.norm(w[i]) for i in range(len(w))] for g in per_batch],
        axis=0,
    )
    fisher = np.sum([[np.sum(g[i] ** 2) for i in range(len(w))] for g in per_batch], axis=0)
    summed = [sum(g[i] for g in per_batch) for i in range(len(w))]
    energy = [np.sum(np.linalg.svd(G, compute_uv=False)[:rank] ** 2) for G in summed]

    np.testing.assert_allclose(got.rgn, rgn, rtol=1e-5)
    np.testing.assert_allclose(got.fisher, fisher, rtol=1e-5)
    np.testing.assert_allclose(got.grad_energy, energy, rtol=1e-5)
    assert got.n_batches == 2 and np.all(got.rgn > 0)
    # GPT-2's fused c_attn is one matrix per layer: q, k, v and o give two per layer
    assert len(targets) == (2 * 2 if arch == "gpt2" else 2 * 4)
    # nothing else was left requiring or holding a gradient
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_rank_energy_is_the_top_singular_values_squared():
    assert rank_energy(torch.diag(torch.tensor([1.0, 3.0, 2.0])), 2) == pytest.approx(13.0)
    assert rank_energy(torch.diag(torch.tensor([1.0, 3.0, 2.0])), 5) == pytest.approx(14.0)


def _numpy_snr(w: np.ndarray) -> float:
    s = np.linalg.svd(w, compute_uv=False)
    q75, q25 = np.quantile(s, [0.75, 0.25])
    eps = (q75 - q25) / 1.349 * (1 + np.sqrt(min(w.shape) / max(w.shape)))
    return s[s > eps].sum() / s[s <= eps].sum() / s[0]


def _with_singular_values(sigma: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """An (m, len(sigma)) matrix whose singular values are exactly ``sigma``."""
    rng = np.random.default_rng(seed)
    n = len(sigma)
    u, _ = np.linalg.qr(rng.normal(size=(m, m)))
    v, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return u[:, :n] @ np.diag(sigma) @ v.T


def test_spectrum_snr_matches_numpy_on_constructed_matrices():
    # three spikes over a bulk of 15 ones and 14 values 0.01 (32 singular values, 48 x 32):
    # IQR = 1 - 0.01, so the bound (0.99 / 1.349) * (1 + sqrt(32/48)) = 1.333 splits them
    sigma = np.concatenate([[40.0, 25.0, 12.0], np.ones(15), np.full(14, 0.01)])
    w = _with_singular_values(sigma, 48)
    got = spectrum_snr(torch.tensor(w, dtype=torch.float32))
    assert got == pytest.approx(77.0 / (15.0 + 14 * 0.01) / 40.0, rel=1e-5)
    assert got == pytest.approx(_numpy_snr(w), rel=1e-5)
    # the transpose (a GPT-2 Conv1D stores (in, out)) has the same SNR
    assert spectrum_snr(torch.tensor(w.T)) == pytest.approx(_numpy_snr(w), rel=1e-9)
    # a random matrix with a planted low-rank signal
    rng = np.random.default_rng(1)
    noisy = rng.normal(size=(64, 40)) + 3.0 * np.outer(rng.normal(size=64), rng.normal(size=40))
    assert spectrum_snr(torch.tensor(noisy)) == pytest.approx(_numpy_snr(noisy), rel=1e-9)


def test_spectrum_snr_without_noise_takes_the_noise_sum_as_one():
    assert spectrum_snr(2.0 * torch.eye(4)) == pytest.approx(8.0 / 1.0 / 2.0)


def test_layer_scores_sum_over_targets_and_snr_is_normalised_per_kind():
    matrices = [Target(f"l{i}.{k}", i, k) for i in range(2) for k in ("q", "o")]
    values = np.array([1.0, 10.0, 3.0, 30.0])  # q: 1, 3 ; o: 10, 30
    np.testing.assert_allclose(per_layer(values, matrices, 2), [11.0, 33.0])
    # q / mean(q) = 0.5, 1.5 ; o / mean(o) = 0.5, 1.5 -> each kind counts equally
    np.testing.assert_allclose(layer_snr(values, matrices, 2), [0.5, 1.5])


def test_adaptation_locators_are_never_circuit_candidates():
    assert set(names(purpose="adapt")) == set(ADAPT)
    assert not set(ADAPT) & set(names(candidates_only=True))
    assert not set(ADAPT) & set(names(purpose="circuit"))
    for name in ADAPT:
        spec = LOCATORS[name]
        assert (spec.source, spec.levels, spec.ranking) == ("adapt", ("layer",), "signed")
    drawn = FaithfulnessConfig(finetuned="ft", diff="diff").wanted()
    assert not set(ADAPT) & set(drawn) and "kl" in drawn
    asked = FaithfulnessConfig(finetuned="ft", diff="diff", sources={"rgn": "adapt"}).wanted()
    assert "rgn" in asked and "fisher" not in asked


@pytest.mark.parametrize("split", ["validation", "test"])
def test_adapt_refuses_any_split_but_train(split):
    with pytest.raises(SumcircuitError, match="adapt reads the train split only"):
        AdaptConfig(split=split)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"parts": ["gradients", "gradients"]}, "at most once"),
        ({"parts": ["weights"]}, "is invalid"),
        ({"probe_steps": 0}, "--probe-steps must be at least 1"),
        ({"targets": ("q", "x")}, "targets"),
        ({"rank": 0}, "rank"),
    ],
)
def test_bad_config_is_one_sentence(kwargs, words):
    with pytest.raises(SumcircuitError, match=words):
        AdaptConfig(**kwargs)


def test_config_takes_the_lora_arm_defaults():
    config = AdaptConfig()
    assert (config.rank, config.alpha, config.lr, config.targets) == (
        8,
        16.0,
        2e-4,
        ("q", "k", "v", "o"),
    )
    probe = config.probe_config("out/probe")
    assert (probe.method, probe.layers, probe.limit, probe.val_limit) == ("lora", None, 64, 0)


def _result(parts=("spectrum",)) -> AdaptResult:
    rows = [{"layer": i, "spectrum_snr": float(i)} for i in range(3)]
    return AdaptResult(n_layers=3, parts=list(parts), layer_rows=rows, matrix_rows=[])


def test_result_round_trips_and_a_missing_part_is_one_sentence(tmp_path):
    result = _result()
    result.save(tmp_path)
    again = AdaptResult.load(tmp_path)
    assert again == result
    assert again.scores("spectrum-snr").tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(SumcircuitError, match="no rgn scores .* --parts gradients"):
        again.scores("rgn")


def test_missing_or_damaged_result_is_one_sentence(tmp_path):
    with pytest.raises(SumcircuitError, match="adapt.json' does not exist; re-run the adapt"):
        AdaptResult.load(tmp_path)
    (tmp_path / "adapt.json").write_text('{"n_layers": 3')
    with pytest.raises(SumcircuitError, match="is damaged .*not valid JSON"):
        AdaptResult.load(tmp_path)
    broken = replace(_result(), layer_rows=[{"layer": 0}, {"layer": 1}, {"layer": 2}])
    broken.save(tmp_path)
    with pytest.raises(SumcircuitError, match="is damaged .*lacks spectrum_snr"):
        AdaptResult.load(tmp_path)
