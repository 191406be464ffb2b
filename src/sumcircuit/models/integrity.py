"""Strict loading: the weights a model loads are exactly the tensors its config describes.

transformers fills a tensor missing from a checkpoint with random values, skips a tensor it does
not know, and (when asked to) re-initialises one of another shape, each with a warning at most;
peft leaves an adapter layer that its file lacks at its initial, no-op values. Each would let an
analysis run on weights that were never trained. :func:`check_load_info` turns transformers'
loading report into one sentence naming the first few keys and the file;
:func:`check_adapter_tensors` compares an adapter file's tensors with the ones its
``adapter_config.json`` creates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from sumcircuit.errors import SumcircuitError

__all__ = ["check_adapter_tensors", "check_load_info", "first_keys", "quiet_load_report"]

_SHOWN = 3  # keys named in a message


def first_keys(keys: Iterable[Any], shown: int = _SHOWN) -> str:
    """``a, b, c and 4 more``: the first ``shown`` of ``keys`` (sorted) and how many follow."""
    keys = sorted(keys)
    head = ", ".join(str(k) for k in keys[:shown])
    return head + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


@contextmanager
def quiet_load_report() -> Iterator[None]:
    """Hide transformers' multi-line LOAD REPORT warning while loading: :func:`check_load_info`
    says the same in one sentence."""
    logger = logging.getLogger("transformers.modeling_utils")

    def drop(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _tied_keys(model: torch.nn.Module) -> set[str]:
    """Parameters the model fills from another one (an output head tied to the embedding): they
    are legitimately absent from its file. Read from the model's own tie table, which
    transformers fills only when the config ties them."""
    tied = getattr(model, "all_tied_weights_keys", None)
    return set(tied or {})


def check_load_info(model: torch.nn.Module, info: dict[str, Any], weights: str, fix: str) -> None:
    """Raise one sentence unless loading filled every tensor of ``model`` from its file, with no
    tensor left over and none of another shape.

    ``info``: what ``from_pretrained(..., output_loading_info=True)`` returned (loaded with
    ``ignore_mismatched_sizes=True``, so that a shape mismatch is reported here rather than raised
    as transformers' multi-line error); ``weights``: the file (or folder) named in the message.
    """
    missing = set(info.get("missing_keys") or ()) - _tied_keys(model)
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = sorted(info.get("mismatched_keys") or ())
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) it needs are missing ({first_keys(missing)})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} tensor(s) are not part of it ({first_keys(unexpected)})"
        )
    if mismatched:
        shapes = [f"{k} {tuple(ckpt)} in the file, {tuple(want)} in the model"
                  for k, ckpt, want in mismatched[:_SHOWN]]  # fmt: skip
        more = f" and {len(mismatched) - _SHOWN} more" if len(mismatched) > _SHOWN else ""
        problems.append(
            f"{len(mismatched)} tensor(s) have another shape ({'; '.join(shapes)}{more})"
        )
    if problems:
        raise SumcircuitError(
            f"{weights} does not hold the weights its config.json describes "
            f"({type(model).__name__}): {', '.join(problems)}; it is refused rather than loaded "
            f"with random values in their place — {fix}"
        )


def check_adapter_tensors(model: torch.nn.Module, adapter_weights: Path, fix: str) -> None:
    """Raise one sentence unless ``adapter_weights`` holds exactly the adapter tensors, by name
    and shape, that the adapter config of the ``PeftModel`` ``model`` created: peft loads a
    file that covers fewer layers or other modules than its config, leaving the rest at their
    initial values (LoRA's B = 0: those layers silently stay unadapted)."""
    from peft import get_peft_model_state_dict

    wanted = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    with safe_open(str(adapter_weights), framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    missing, extra = set(wanted) - set(found), set(found) - set(wanted)
    shaped = sorted(k for k in set(wanted) & set(found) if wanted[k] != found[k])
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} tensor(s) it configures are missing ({first_keys(missing)})"
        )
    if extra:
        problems.append(f"{len(extra)} tensor(s) it does not configure ({first_keys(extra)})")
    if shaped:
        problems.append(
            f"{len(shaped)} tensor(s) have another shape (e.g. {shaped[0]} {found[shaped[0]]} in the file, "
            f"{wanted[shaped[0]]} configured)"
        )
    if problems:
        raise SumcircuitError(
            f"the adapter weights {str(adapter_weights)!r} do not match its adapter_config.json: "
            f"{', '.join(problems)}; it is refused rather than applied in part — {fix}"
        )
