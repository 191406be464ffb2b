"""The reference log-likelihood of evaluate, checked against a plain forward with labels on tiny
models of each shape, with and without a LoRA adapter, and end to end through ``evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

from sumcircuit.data.prompting import IGNORE_INDEX, Encoded, Prompter
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvalResult, EvaluateConfig, evaluate
from sumcircuit.evaluation.loglik import reference_loglik
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
    expected = _independent(model, forced)
    # batches of 3 mix lengths: padding must not change a document's score
    got = reference_loglik(model, Arch.from_model(model), forced, batch_size=3, pad_id=EOS)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    assert np.all(got < 0)


def test_loglik_of_an_adapter_model(gpt2_tok) -> None:
    """A peft-wrapped model is scored with its adapter on (not the bare base model)."""
    base = tiny_model("llama")
    arch = Arch.from_model(base)
    _, forced = _forced(gpt2_tok)
    plain = reference_loglik(base, arch, forced, batch_size=4, pad_id=EOS)
    torch.manual_seed(1)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    adapted = get_peft_model(tiny_model("llama"), config).eval()
    got = reference_loglik(adapted, arch, forced, batch_size=4, pad_id=EOS)
    np.testing.assert_allclose(got, _independent(adapted, forced), rtol=0, atol=2e-5)
    assert np.abs(got - plain).max() > 1e-3  # the adapter changed the scores


def test_too_long_for_the_model_is_one_sentence(gpt2_tok) -> None:
    model = tiny_model("gpt2")
    long = Encoded(input_ids=[1] * 600, doc_span=(0, 590), summary_start=590)
    with pytest.raises(SumcircuitError, match="more than the model's 512 positions"):
        reference_loglik(model, Arch.from_model(model), [long], batch_size=1, pad_id=EOS)


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
