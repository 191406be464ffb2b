"""The base/fine-tuned model pair that diff, validate and scan compare.

Both models are loaded the same way (same dtype, device and attention implementation) and fed
the same token ids, made by the *base* model's tokenizer. :func:`check_pair` is the one check of
compatibility every stage runs before any work: same architecture and sizes (layer, head, KV-head
counts), same vocabulary (embedding rows), same tokenizer (token table), the same tensors (every
name and shape of both state dicts), and — unless a stage allows it — weights that differ. Each
model's tensors are those of its file: loading is strict (:mod:`sumcircuit.models.integrity`).
"""

from __future__ import annotations

import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.integrity import first_keys
from sumcircuit.models.loader import LoadedModel, load_model

__all__ = ["DTYPES", "check_pair", "load_pair", "resolve_dtype"]

#: Model dtypes a stage may ask for (``--dtype``).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

_FIX = "use a fine-tune of this base model (same architecture and tokenizer)"


def resolve_dtype(name: str) -> torch.dtype:
    """``DTYPES[name]``, or one sentence naming the choices."""
    if name not in DTYPES:
        raise SumcircuitError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return DTYPES[name]


def load_pair(
    base: str,
    finetuned: str,
    *,
    dtype: str = "float32",
    device: torch.device | str | None = None,
    stage: str = "the comparison",
    allow_identical: bool = False,
) -> tuple[LoadedModel, LoadedModel]:
    """Load ``base`` and ``finetuned`` (each a preset, local directory or Hugging Face id) alike
    and :func:`check_pair` them. Encode data with the base model's tokenizer."""
    kwargs = {"attn_implementation": "sdpa", "dtype": resolve_dtype(dtype), "device": device}
    pair = load_model(base, **kwargs), load_model(finetuned, **kwargs)
    check_pair(*pair, stage=stage, allow_identical=allow_identical)
    return pair


def check_pair(
    base: LoadedModel,
    finetuned: LoadedModel,
    *,
    stage: str = "the comparison",
    allow_identical: bool = False,
) -> None:
    """Raise one clear :class:`SumcircuitError` unless ``finetuned`` can be compared with
    ``base`` token for token and component for component.

    ``stage`` names the caller in the message ("diff", "validate", ...). Identical weights are an
    error ("nothing to explain") unless ``allow_identical``.
    """
    a, b = base.arch.describe(), finetuned.arch.describe()
    if a != b:
        diffs = ", ".join(f"{k} {a[k]} vs {b.get(k)}" for k in a if a[k] != b.get(k))
        raise SumcircuitError(
            f"the base and fine-tuned models have different architectures ({diffs}); "
            f"{stage} needs a model and its own fine-tune: {_FIX}"
        )
    rows_b, rows_f = _vocab_rows(base), _vocab_rows(finetuned)
    if rows_b != rows_f:
        raise SumcircuitError(
            f"the base and fine-tuned models have different vocabularies ({rows_b} vs {rows_f} "
            f"embedding rows); {stage} needs both to read the same token ids: {_FIX}"
        )
    vocab_b, vocab_f = base.tokenizer.get_vocab(), finetuned.tokenizer.get_vocab()
    if vocab_b != vocab_f:
        odd = sorted(set(vocab_b.items()) ^ set(vocab_f.items()))[:3]
        raise SumcircuitError(
            f"the base and fine-tuned models' tokenizers have different vocabularies "
            f"({len(vocab_b)} vs {len(vocab_f)} tokens, e.g. {odd}); {stage} encodes with the "
            f"base tokenizer, so both must share it: {_FIX}"
        )
    _check_same_tensors(base, finetuned, stage)
    params_b = dict(base.model.named_parameters())
    params_f = dict(finetuned.model.named_parameters())
    if not allow_identical and all(torch.equal(p, params_f[n]) for n, p in params_b.items()):
        raise SumcircuitError(
            f"the base and fine-tuned models have identical weights: there is nothing to explain "
            f"for {stage} (check --finetuned)"
        )


def _check_same_tensors(base: LoadedModel, finetuned: LoadedModel, stage: str) -> None:
    """The two state dicts hold the same tensor names with the same shapes."""
    shapes_b = {n: tuple(t.shape) for n, t in base.model.state_dict().items()}
    shapes_f = {n: tuple(t.shape) for n, t in finetuned.model.state_dict().items()}
    if shapes_b == shapes_f:
        return
    only_b, only_f = set(shapes_b) - set(shapes_f), set(shapes_f) - set(shapes_b)
    reshaped = sorted(n for n in set(shapes_b) & set(shapes_f) if shapes_b[n] != shapes_f[n])
    parts = []
    if reshaped:
        name = reshaped[0]
        parts.append(
            f"{len(reshaped)} tensor(s) of another shape, e.g. {name} {shapes_b[name]} in the "
            f"base, {shapes_f[name]} in the fine-tune"
        )
    if only_b:
        parts.append(f"{len(only_b)} only in the base ({first_keys(only_b)})")
    if only_f:
        parts.append(f"{len(only_f)} only in the fine-tune ({first_keys(only_f)})")
    unmerged = any("lora_" in n for n in only_f)
    raise SumcircuitError(
        f"the base and fine-tuned models hold different tensors ({'; '.join(parts)}); {stage} "
        "compares them tensor for tensor: "
        + ("merge the fine-tune's LoRA adapters into it first" if unmerged else _FIX)
    )


def _vocab_rows(loaded: LoadedModel) -> int:
    """Rows of the input embedding (the vocabulary the model reads)."""
    return int(loaded.model.get_input_embeddings().weight.shape[0])
