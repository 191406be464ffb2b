"""The reference log-likelihood of evaluate, checked against a plain forward with labels on tiny
models of each shape, with and without a LoRA adapter, and end to end through ``evaluate``; one
prefill per prompt serves generation and the log-likelihood, equal to the former two passes
(generation, then a batched teacher-forced forward); ``--no-generate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from sumcircuit.analysis.causal.patching import loglik as batch_loglik
from sumcircuit.cli import main
from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.examples import Example
from sumcircuit.data.prompting import IGNORE_INDEX, Encoded, Prompter
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvalResult, EvaluateConfig, compare_results, evaluate
from sumcircuit.evaluation.generate import generate_and_score, generate_ids
from sumcircuit.evaluation.loglik import (
    batch_continuation_loglik,
    check_fits,
    continuation_loglik,
    reference_loglik,
    scored_references,
)
from sumcircuit.evaluation.prefill import prefix_cache
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import EOS, tiny_model
from sumcircuit.models.trained import load_trained

ARCHS = ("gpt2", "llama", "gemma3")
MAX_LENGTH, RESERVE = 48, 8
PAIRS = [  # the data loader strips documents: no trailing spaces here either
    (
        ("The council approved the new park on Monday after a long debate. " * 6).strip(),
        "Park approved.",
    ),
    ("Rain fell across the north, flooding roads.", "Floods hit roads in the north of the land."),
    (
        ("A local team won the cup final for the first time in fifty years. " * 2).strip(),
        "Team wins cup.",
    ),
    ("Scientists found a frog.", "New frog species found in the rainforest by scientists today."),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _forced(tokenizer) -> tuple[list[Encoded], list[Encoded]]:
    """Generation prompts (document cut to leave RESERVE) and the same with the reference."""
    prompter = Prompter(tokenizer, max_length=MAX_LENGTH)
    prompts = [prompter.encode(doc, None, reserve=RESERVE) for doc, _ in PAIRS]
    return prompts, [
        prompter.append_summary(p, s) for p, (_, s) in zip(prompts, PAIRS, strict=True)
    ]


def _prepared(tokenizer) -> Prepared:
    prompts, _ = _forced(tokenizer)
    ids = [f"d{i}" for i in range(len(PAIRS))]
    examples = [Example(i, doc, summary) for i, (doc, summary) in zip(ids, PAIRS, strict=True)]
    return Prepared(encoded=prompts, ids=ids, examples=examples)


def _loglik(model, tokenizer) -> np.ndarray:
    return reference_loglik(
        model, tokenizer, _prepared(tokenizer), template="plain", max_length=MAX_LENGTH
    )


def _two_pass_loglik(model: torch.nn.Module, forced: list[Encoded]) -> np.ndarray:
    """The former computation, kept here as the reference: prompt and reference teacher-forced
    again in right-padded batches of 3, the LM head only at reference-predicting positions."""
    arch, out = Arch.from_model(model), np.full(len(forced), np.nan)
    with torch.inference_mode():
        for indices, batch in iter_batches(forced, 3, EOS):
            out[indices] = batch_loglik(model, arch, batch).numpy()
    return out


def _independent(model: torch.nn.Module, encoded: list[Encoded]) -> np.ndarray:
    """−(mean CE) from the model's own loss: one unpadded forward per document, labels only on
    the reference tokens (the model shifts them itself)."""
    out = []
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e.input_ids])
            labels = ids.clone()
            labels[:, : e.summary_start] = IGNORE_INDEX
            out.append(-model(input_ids=ids, labels=labels).loss.item())
    return np.asarray(out)


def test_prompt_is_the_generation_prompt_and_the_summary_is_whole(gpt2_tok) -> None:
    prompts, forced = _forced(gpt2_tok)
    assert prompts[0].truncated  # the long document was cut as for generation
    for prompt, full, (_, summary) in zip(prompts, forced, PAIRS, strict=True):
        assert full.input_ids[: full.summary_start] == prompt.input_ids
        assert full.doc_span == prompt.doc_span
        reference = gpt2_tok(" " + summary, add_special_tokens=False).input_ids + [EOS]
        assert full.input_ids[full.summary_start :] == reference
    with pytest.raises(SumcircuitError, match="without a summary"):
        Prompter(gpt2_tok, max_length=MAX_LENGTH).append_summary(forced[0], "again")


@pytest.mark.parametrize("arch", ARCHS)
def test_loglik_equals_a_plain_forward_with_labels(arch: str, gpt2_tok) -> None:
    model = tiny_model(arch)
    _, forced = _forced(gpt2_tok)
    got = _loglik(model, gpt2_tok)
    np.testing.assert_allclose(got, _independent(model, forced), rtol=0, atol=2e-5)
    assert np.all(got < 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_prefill_equals_the_two_passes(arch: str, gpt2_tok) -> None:
    """Generation and the reference log-likelihood from one prefill per prompt: the summaries
    of generation alone, the log-likelihoods of the former teacher-forced pass (gemma3: a
    16-token sliding window, shorter than the prompts), and every prompt token embedded once."""
    model = tiny_model(arch, seed=3, attn_implementation="sdpa")
    prompts, forced = _forced(gpt2_tok)
    kw = {"batch_size": 3, "max_new_tokens": RESERVE, "stop_at_newline": False, "progress": False}
    embedded: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: embedded.append(args[0].numel())
    )
    try:
        shared = generate_and_score(model, gpt2_tok, prompts, forced, **kw)
    finally:
        hook.remove()
    assert shared.ids == generate_ids(model, gpt2_tok, prompts, **kw)
    np.testing.assert_allclose(shared.loglik, _two_pass_loglik(model, forced), rtol=0, atol=1e-6)
    # each prompt but its last token once (prefill), the last token and the reference but its
    # last token once (scoring, right-padded to the longest reference of the batch: a batch of 3
    # is one scoring group), one token per row and step (generation: random models never emit
    # EOS); the former two passes embedded every prompt a second time
    prefill = sum(len(p.input_ids) - 1 for p in prompts)
    scoring = 0
    for indices, _ in iter_batches(prompts, 3, EOS, by_length=True, padding_side="left"):
        scoring += len(indices) * max(forced[i].n_summary_tokens for i in indices)
    assert sum(embedded) == prefill + scoring + len(prompts) * RESERVE


@pytest.mark.parametrize("arch", ARCHS)
def test_a_batched_continuation_equals_one_row_at_a_time(arch: str, gpt2_tok) -> None:
    """Rows of different prompt and reference lengths continued in one padded batch score what
    each continued alone scores (gemma3: prompts past its 16-token sliding window), the caches
    stay untouched, and a one-token prompt (no cache to batch) is scored row by row."""
    model = tiny_model(arch, seed=3, attn_implementation="sdpa")
    _, forced = _forced(gpt2_tok)
    with torch.inference_mode():
        caches = [prefix_cache(model, f.input_ids[: f.summary_start]) for f in forced]
        keys = [c.layers[0].keys.clone() for c in caches]
        alone = [
            continuation_loglik(model, prefix_cache(model, f.input_ids[: f.summary_start]), f)
            for f in forced
        ]
        batched = batch_continuation_loglik(model, caches, forced)
        assert [torch.equal(c.layers[0].keys, k) for c, k in zip(caches, keys, strict=True)] == [
            True
        ] * 4
        np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=0)
        np.testing.assert_array_equal(scored_references(model, caches, forced), batched)
        one = Encoded(input_ids=[7, 8, 9], doc_span=(0, 1), summary_start=1)
        rows = [*forced, one]
        assert batch_continuation_loglik(model, [*caches, None], rows) is None
        mixed = scored_references(model, [*caches, None], rows)
        np.testing.assert_allclose(mixed[:4], alone, rtol=1e-6, atol=0)
        assert mixed[4] == continuation_loglik(model, None, one)


def test_loglik_of_an_adapter_model(gpt2_tok) -> None:
    """A peft-wrapped model is scored with its adapter on (not the bare base model)."""
    base = tiny_model("llama")
    _, forced = _forced(gpt2_tok)
    plain = _loglik(base, gpt2_tok)
    torch.manual_seed(1)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    adapted = get_peft_model(tiny_model("llama"), config).eval()
    got = _loglik(adapted, gpt2_tok)
    np.testing.assert_allclose(got, _independent(adapted, forced), rtol=0, atol=2e-5)
    assert np.abs(got - plain).max() > 1e-3  # the adapter changed the scores


def test_too_long_for_the_model_is_one_sentence(gpt2_tok) -> None:
    model = tiny_model("gpt2")
    long = Encoded(input_ids=[1] * 600, doc_span=(0, 590), summary_start=590)
    with pytest.raises(SumcircuitError, match="more than the model's 512 positions"):
        check_fits(model, [long])


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [
        {"id": f"d{i}", "document": doc, "summary": summary, "split": split}
        for split in ("train", "test")
        for i, (doc, summary) in enumerate(PAIRS)
    ]
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(model: str, data: Path, out: Path, **kw) -> EvaluateConfig:
    return EvaluateConfig(
        model=model,
        data=str(data),
        split="test",
        out=str(out),
        max_length=MAX_LENGTH,
        max_new_tokens=RESERVE,
        batch_size=3,
        n_boot=200,
        progress=False,
        **kw,
    )


def test_evaluate_scores_a_lora_adapter_end_to_end(tiny_dirs, data_file, tmp_path) -> None:
    """``evaluate --adapter``: per-example loglik of the base+adapter model equals the plain
    forward of that model on the generation prompt followed by the reference."""
    from sumcircuit.training import FinetuneConfig, finetune

    adapter = tmp_path / "lora"
    finetune(
        FinetuneConfig(
            model=str(tiny_dirs["llama"]),
            data=str(data_file),
            out=str(adapter),
            method="lora",
            epochs=1,
            lr=5e-2,
            batch_size=2,
            max_length=MAX_LENGTH,
            val_limit=0,
            precision="fp32",
            progress=False,
        )
    )
    base = evaluate(_config(str(tiny_dirs["llama"]), data_file, tmp_path / "base.json"))
    tuned = evaluate(
        _config(str(tiny_dirs["llama"]), data_file, tmp_path / "tuned.json", adapter=str(adapter))
    )
    loaded = load_trained(str(tiny_dirs["llama"]), adapter)
    _, forced = _forced(loaded.tokenizer)
    expected = _independent(loaded.model, forced)
    np.testing.assert_allclose(tuned.predictions["loglik"], expected, rtol=0, atol=2e-5)
    assert np.abs(tuned.predictions["loglik"] - base.predictions["loglik"]).max() > 1e-3
    assert tuned.loglik["mean"] == pytest.approx(expected.mean())
    lo, hi = tuned.loglik["ci95"]
    assert lo <= tuned.loglik["mean"] <= hi
    assert tuned.loglik["n_tokens"] == sum(e.n_summary_tokens for e in forced)
    again = EvalResult.load(tmp_path / "tuned.json")
    np.testing.assert_array_equal(again.predictions["loglik"], tuned.predictions["loglik"])
    assert again.loglik == tuned.loglik


def test_no_generate_scores_the_same_loglik_alone(tiny_dirs, data_file, tmp_path, capsys) -> None:
    """``--no-generate``: the log-likelihood of a full evaluation, no ROUGE, no loop rate, no
    predictions; it saves, loads and compares (ROUGE None) like any result."""
    model = str(tiny_dirs["gemma3"])
    full = evaluate(_config(model, data_file, tmp_path / "full.json"))
    alone = evaluate(_config(model, data_file, tmp_path / "alone.json", generate=False))
    np.testing.assert_allclose(alone.predictions["loglik"], full.predictions["loglik"], atol=1e-9)
    assert not alone.generated and alone.loop_rate is None
    assert alone.generation["decoding"] == "none (reference log-likelihood only)"
    assert alone.predictions["prediction"].isna().all()
    assert alone.predictions[["rougeL", "loops"]].isna().all().all()
    assert alone.to_frame()["metric"].tolist() == ["loglik"]
    again = EvalResult.load(tmp_path / "alone.json")
    assert not again.generated and again.loglik == alone.loglik
    rows = [json.loads(line) for line in (tmp_path / "alone.predictions.jsonl").open()]
    assert rows[0]["prediction"] is None and rows[0]["rougeL"] is None and rows[0]["loops"] is None

    both = compare_results(tmp_path / "full.json", tmp_path / "alone.json", n_boot=100)
    assert both["rougeL"] is None and both["n"] == len(PAIRS)
    assert abs(both["loglik"]["mean_diff"]) < 1e-9
    assert main(["compare", str(tmp_path / "full.json"), str(tmp_path / "alone.json")]) == 0
    assert "rougeL     not in both results" in capsys.readouterr().out

    with pytest.raises(SumcircuitError, match="leaves nothing to evaluate"):
        _config(model, data_file, tmp_path / "x.json", generate=False, loglik=False)
