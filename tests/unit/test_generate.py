"""Batched generation: equal to one-at-a-time token for token, input order kept, stops right."""

from __future__ import annotations

import pytest
import torch

from sumcircuit.data.prompting import Prompter
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation import generate as gen
from sumcircuit.evaluation.generate import generate_ids, generate_summaries, newline_stops
from sumcircuit.evaluation.prefill import batch_cache, prefix_cache
from sumcircuit.models.tiny import tiny_model

# Different lengths, so that a batch of them is really left-padded.
DOCUMENTS = [
    "The council approved the new budget on Monday after a long debate.",
    "Rain is expected.",
    "Police said the man, 34, was arrested in the town centre and later released on bail "
    "pending further inquiries into the incident.",
    "Scientists found water ice near the lunar south pole.",
    "A short one",
    "Shares rose 3% in early trading after the results beat forecasts for the third quarter.",
]
NEW = 8


@pytest.fixture(scope="module")
def prompts(gpt2_tok):
    prompter = Prompter(gpt2_tok, max_length=96)
    return [prompter.encode(d, None, reserve=NEW) for d in DOCUMENTS]


def _ids(model, tok, prompts, **kw):
    kw = {"max_new_tokens": NEW, "progress": False, "stop_at_newline": False} | kw
    return generate_ids(model, tok, prompts, **kw)


@pytest.mark.parametrize(
    "arch,attn", [("gpt2", "sdpa"), ("llama", "sdpa"), ("gemma3", "sdpa"), ("llama", "eager")]
)
def test_batched_equals_one_at_a_time(arch, attn, gpt2_tok, prompts) -> None:
    model = tiny_model(arch, seed=1, attn_implementation=attn)
    assert len({len(p.input_ids) for p in prompts}) == len(prompts)  # padding really happens
    batched = _ids(model, gpt2_tok, prompts, batch_size=4)
    single = [_ids(model, gpt2_tok, [p], batch_size=1)[0] for p in prompts]
    assert batched == single
    assert all(len(s) == NEW for s in single)  # random models never emit EOS here


def test_beam_search_batched_equals_one_at_a_time(gpt2_tok, prompts) -> None:
    model = tiny_model("llama", seed=2, attn_implementation="sdpa")
    batched = _ids(model, gpt2_tok, prompts, batch_size=3, num_beams=3)
    single = [_ids(model, gpt2_tok, [p], batch_size=1, num_beams=3)[0] for p in prompts]
    assert batched == single
    greedy = _ids(model, gpt2_tok, prompts, batch_size=3)
    assert batched != greedy  # beam search really ran


def test_output_order_is_input_order(gpt2_tok, prompts) -> None:
    model = tiny_model("llama", seed=3, attn_implementation="sdpa")
    out = generate_summaries(
        model, gpt2_tok, prompts, batch_size=2, max_new_tokens=NEW, progress=False
    )
    perm = [4, 0, 5, 2, 1, 3]
    out_perm = generate_summaries(
        model,
        gpt2_tok,
        [prompts[i] for i in perm],
        batch_size=2,
        max_new_tokens=NEW,
        progress=False,
    )
    assert out_perm == [out[i] for i in perm]
    assert len(set(out)) > 1  # documents give different summaries, so the order is observable


def test_stops_at_eos_from_generation_config(gpt2_tok, prompts) -> None:
    model = tiny_model("gpt2", seed=4, attn_implementation="sdpa")
    free = _ids(model, gpt2_tok, prompts[:1])[0]
    model.generation_config.eos_token_id = free[3]
    stopped = _ids(model, gpt2_tok, prompts[:1])[0]
    assert stopped == free[: free.index(free[3])]  # up to, not including, the first EOS


def test_newline_criterion_stops_generation_and_keeps_the_token(gpt2_tok, prompts, monkeypatch):
    model = tiny_model("llama", seed=5, attn_implementation="sdpa")
    free = _ids(model, gpt2_tok, prompts)
    target = free[0][2]  # pretend this token is "text\n"
    size = model.get_output_embeddings().weight.shape[0]
    has_nl = torch.zeros(size, dtype=torch.bool)
    has_nl[target] = True
    tables = (has_nl, has_nl.clone(), torch.ones(size, dtype=torch.bool))
    monkeypatch.setattr(gen, "_token_tables", lambda tok, n: tables)
    stopped = _ids(model, gpt2_tok, prompts, stop_at_newline=True, batch_size=3)
    for row_free, row in zip(free, stopped, strict=True):
        expected = row_free[: row_free.index(target) + 1] if target in row_free else row_free
        assert row == expected
    assert stopped[0] == free[0][:3]


def test_newline_stops_pinned() -> None:
    # vocabulary: 0 "a", 1 "\n", 2 " ", 3 ".\n\nThe", 4 "b"
    has_nl = torch.tensor([False, True, False, True, False])
    before = torch.tensor([False, False, False, True, False])
    text = torch.tensor([True, False, False, True, True])
    generated = torch.tensor(
        [
            [1, 2, 0, 1, 4],  # leading newline ignored; stops at the newline after "a"
            [3, 0, 0, 0, 0],  # text before the newline inside the token: stops at once
            [2, 1, 2, 1, 0],  # only whitespace before the newlines: never stops
        ]
    )
    expected = torch.tensor(
        [
            [False, False, False, True, False],
            [True, False, False, False, False],
            [False, False, False, False, False],
        ]
    )
    assert torch.equal(newline_stops(generated, has_nl, before, text), expected)


def test_decode_cuts_at_the_first_newline_after_text(gpt2_tok) -> None:
    ids = gpt2_tok("\n A cat sat.\n\nThe end").input_ids
    assert gen.decode(gpt2_tok, ids, stop_at_newline=True) == "A cat sat."
    assert gen.decode(gpt2_tok, ids, stop_at_newline=False) == "A cat sat.\n\nThe end"


def test_peft_wrapped_model_generates_like_the_base(gpt2_tok, prompts) -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_model("llama", seed=6, attn_implementation="sdpa")
    plain = _ids(model, gpt2_tok, prompts, batch_size=4)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert _ids(wrapped.eval(), gpt2_tok, prompts, batch_size=4) == plain  # LoRA B starts at 0


def test_prompt_with_summary_is_refused(gpt2_tok) -> None:
    model = tiny_model("gpt2", seed=0)
    encoded = Prompter(gpt2_tok, max_length=64).encode("A document.", "A summary.")
    with pytest.raises(SumcircuitError, match="already contains a summary"):
        generate_summaries(model, gpt2_tok, [encoded], progress=False)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3", "gpt_neox"])
def test_prefilled_cache_generates_like_plain_generate(arch, gpt2_tok, prompts) -> None:
    """The per-row prefill (gemma3: a 16-token sliding window, shorter than the prompts) gives
    the tokens of transformers' own padded-batch generate."""
    model = tiny_model(arch, seed=7, attn_implementation="sdpa")
    rows = [p.input_ids for p in prompts[:4]]
    caches = [prefix_cache(model, r) for r in rows]
    assert batch_cache(model, rows, caches, NEW) is not None  # the fast path runs
    ours = _ids(model, gpt2_tok, prompts[:4], batch_size=4)
    for p, row in zip(prompts[:4], ours, strict=True):
        ids = torch.tensor([p.input_ids])
        plain = model.generate(
            input_ids=ids, max_new_tokens=NEW, do_sample=False, pad_token_id=gpt2_tok.eos_token_id
        )
        assert row == plain[0, ids.shape[1] :].tolist()


def _repeats(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("num_beams", [1, 2])
def test_decoding_options_batched_equal_one_at_a_time(num_beams, gpt2_tok, prompts) -> None:
    """The options act on each row's own tokens: padding neither counts as a repeat nor is
    penalized, so a padded row decodes as it does alone."""
    model = tiny_model("llama", seed=8, attn_implementation="sdpa")
    options = {"no_repeat_ngram_size": 2, "repetition_penalty": 1.5, "num_beams": num_beams}
    batched = _ids(model, gpt2_tok, prompts, batch_size=4, **options)
    single = [_ids(model, gpt2_tok, [p], batch_size=1, **options)[0] for p in prompts]
    assert batched == single


def test_no_repeat_ngram_bans_repeats_of_prompt_and_summary(gpt2_tok, prompts) -> None:
    model = tiny_model("gpt2", seed=9, attn_implementation="sdpa")
    kw = {"batch_size": 3, "max_new_tokens": 24}
    free = _ids(model, gpt2_tok, prompts, **kw)
    assert any(_repeats(row, 2) for row in free)  # a random model repeats itself
    banned = _ids(model, gpt2_tok, prompts, no_repeat_ngram_size=2, **kw)
    for prompt, row in zip(prompts, banned, strict=True):
        assert not _repeats(prompt.input_ids + row, 2)
    assert _ids(model, gpt2_tok, prompts, no_repeat_ngram_size=0, repetition_penalty=1.0, **kw) == (
        free
    )  # the defaults are off


def test_repetition_penalty_is_transformers_own(gpt2_tok, prompts) -> None:
    """One prompt alone: the same tokens as transformers' generate with the same penalty."""
    model = tiny_model("gpt2", seed=9, attn_implementation="sdpa")  # repeats one token
    prompt, kw = prompts[2], {"max_new_tokens": 24}
    ours = _ids(model, gpt2_tok, [prompt], repetition_penalty=3.0, **kw)[0]
    ids = torch.tensor([prompt.input_ids])
    plain = model.generate(
        input_ids=ids,
        max_new_tokens=24,
        do_sample=False,
        repetition_penalty=3.0,
        pad_token_id=gpt2_tok.eos_token_id,
    )
    assert ours == plain[0, ids.shape[1] :].tolist()
    assert ours != _ids(model, gpt2_tok, [prompt], **kw)[0]  # the penalty changed the summary


def test_model_generation_config_penalty_is_ignored(gpt2_tok, prompts) -> None:
    """Decoding is set by the evaluation's options, not by a model's generation config."""
    model = tiny_model("gpt2", seed=9, attn_implementation="sdpa")  # repeats one token
    free = _ids(model, gpt2_tok, prompts[2:3], max_new_tokens=24)
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.no_repeat_ngram_size = 1
    assert _ids(model, gpt2_tok, prompts[2:3], max_new_tokens=24) == free
