"""Hugging Face datasets: ``hf:NAME[:CONFIG]`` loaded through ``datasets`` (the ``hf`` extra).

The dataset keeps its own train/validation/test splits (one split only: split by hashed id), and
well-known names get their field defaults (``cnn_dailymail``: article/highlights, ...). The
checksum is the sha256 of the name and the splits' fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sumcircuit.data.build import build_dataset
from sumcircuit.data.examples import Dataset
from sumcircuit.data.splits import canonical_split_name
from sumcircuit.errors import SumcircuitError

log = logging.getLogger(__name__)

#: Hugging Face dataset name -> (document field, summary field, default config).
HF_DEFAULTS: dict[str, tuple[str, str, str | None]] = {
    "xsum": ("document", "summary", None),
    "edinburghnlp/xsum": ("document", "summary", None),
    "cnn_dailymail": ("article", "highlights", "3.0.0"),
    "abisee/cnn_dailymail": ("article", "highlights", "3.0.0"),
    "samsum": ("dialogue", "summary", None),
    "billsum": ("text", "summary", None),
    "multi_news": ("document", "summary", None),
    "gigaword": ("document", "summary", None),
}


def load_hf(name: str, document_field: str, summary_field: str) -> Dataset:
    """``hf:NAME[:CONFIG]`` as a cleaned :class:`Dataset` with its own splits."""
    body = name[3:]
    hf_name, _, config = body.partition(":")
    if not hf_name:
        raise SumcircuitError("an hf: dataset needs a name, e.g. hf:EdinburghNLP/xsum.")
    defaults = HF_DEFAULTS.get(hf_name.lower())
    if defaults is not None:
        if document_field == "document":
            document_field = defaults[0]
        if summary_field == "summary":
            summary_field = defaults[1]
        config = config or (defaults[2] or "")
    try:
        import datasets  # lazy: optional dependency
    except ImportError:
        raise SumcircuitError(
            f'loading {name} needs the Hugging Face datasets package: pip install "sumcircuit[hf]".'
        ) from None
    label = hf_name + (f":{config}" if config else "")
    try:
        loaded = datasets.load_dataset(hf_name, config or None)
    except Exception as err:  # network, hub and builder errors all end here
        raise SumcircuitError(
            f"could not load Hugging Face dataset {label} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); check the name and that "
            "the Hub is reachable, or set HF_DATASETS_OFFLINE=1 to use a cached copy."
        ) from None
    parts = dict(loaded.items()) if hasattr(loaded, "items") else {"train": loaded}
    labelled: dict[str | None, list[tuple[Any, Any, Any]]] = {}
    fingerprints = {}
    for split_name, part in parts.items():
        split = canonical_split_name(str(split_name))
        if split is None:
            log.info("%s: ignoring split %r", label, split_name)
            continue
        columns = list(part.column_names)
        for field in (document_field, summary_field):
            if field not in columns:
                raise SumcircuitError(
                    f"{label} [{split_name}] has no field {field!r}; fields found: "
                    f"{', '.join(columns)} — choose them with --document-field/--summary-field."
                )
        ids = part["id"] if "id" in columns else [None] * len(part)
        labelled[split] = list(zip(ids, part[document_field], part[summary_field], strict=True))
        fingerprints[split] = getattr(part, "_fingerprint", None) or len(part)
    if not labelled:
        raise SumcircuitError(f"{label} has no train/validation/test split: {', '.join(parts)}.")
    if set(labelled) == {"train"}:  # only one split: make our own
        labelled = {None: labelled["train"]}
    checksum = hashlib.sha256(
        json.dumps({"name": label, "fingerprints": fingerprints}, sort_keys=True).encode()
    ).hexdigest()
    return build_dataset(
        label,
        labelled,
        checksum=checksum,
        source=f"Hugging Face datasets: {label}",
        origin=label,
        fields=(document_field, summary_field),
    )
