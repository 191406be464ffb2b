"""The data options each study section resolves to, per preset: pinned to the values the study
used when every stage config still declared its own data fields (sumcircuit at b1f8d27), so that
moving those fields into one shared dataclass left what every preset computes unchanged."""

from __future__ import annotations

import pytest

from sumcircuit.study.config import build_config

# section: (split, limit, max_length, batch_size); finetune and lora read the train split.
PINNED: dict[str | None, dict[str, tuple[str | None, int | None, int, int]]] = {
    "quick": {
        "finetune": (None, 64, 256, 4),
        "diff": ("validation", 32, 256, 4),
        "attribute": ("validation", 32, 256, 4),
        "exact": ("validation", 0, 256, 8),
        "faithfulness": ("validation", 36, 256, 4),
        "validate": ("test", 8, 256, 4),
        "lora": (None, 48, 256, 4),
        "evaluate": ("test", 20, 256, 20),
    },
    "standard": {
        "finetune": (None, None, 256, 4),
        "diff": ("validation", 64, 256, 4),
        "attribute": ("validation", 64, 256, 4),
        "exact": ("validation", 8, 256, 4),
        "faithfulness": ("validation", 76, 256, 4),
        "validate": ("test", 16, 256, 4),
        "lora": (None, 256, 256, 4),
        "evaluate": ("test", None, 256, 16),
    },
    "paper": {
        "finetune": (None, None, 512, 4),
        "diff": ("validation", 64, 512, 4),
        "attribute": ("validation", 64, 512, 8),
        "exact": ("validation", 0, 512, 8),
        "faithfulness": ("validation", None, 512, 8),
        "validate": ("test", 100, 512, 8),
        "lora": (None, None, 512, 4),
        "evaluate": ("test", None, 512, 16),
    },
    None: {
        "finetune": (None, 64, 384, 4),
        "diff": ("validation", 64, 384, 4),
        "attribute": ("validation", 64, 384, 8),
        "exact": ("validation", 0, 384, 8),
        "faithfulness": ("validation", None, 384, 8),
        "validate": ("test", 50, 384, 8),
        "lora": (None, 64, 384, 4),
        "evaluate": ("test", 20, 384, 16),
    },
}
# the quick study's data, plus the curve and the adapt stage (on with it; the first 32 train
# pairs: the gradient pass's limit and an 8-step probe of 4)
PINNED["placement"] = {
    **PINNED["quick"],
    "placement": (None, 48, 256, 4),
    "adapt": ("train", 32, 256, 4),
}
# The same in every section of every preset.
COMMON = {
    "data": "xsum",
    "template": "plain",
    "document_field": "document",
    "summary_field": "summary",
}
PAIR = {"seed": 0, "n_boot": 2000, "dtype": "float32", "device": None}
PAIR_SECTIONS = ("diff", "attribute", "exact", "faithfulness", "validate")


@pytest.mark.parametrize("preset", list(PINNED))
def test_every_section_reads_the_pinned_data(preset: str | None) -> None:
    config = build_config(preset=preset)
    for section, (split, limit, max_length, batch_size) in PINNED[preset].items():
        resolved = getattr(config, section).to_dict()
        expected = COMMON | {"limit": limit, "max_length": max_length, "batch_size": batch_size}
        if split is not None:
            expected["split"] = split
        else:
            assert "split" not in resolved, section
        if section in PAIR_SECTIONS:
            expected |= PAIR
        got = {key: resolved[key] for key in expected}
        assert got == expected, f"preset {preset}, section {section}"
