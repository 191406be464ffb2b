"""``sumcircuit compare RUN_A RUN_B ...``: do two or more runs find the change in the same place?

For every pair of runs and every locator both have (the diff's change measures, each
attribution, the exact scan, the position baselines): the overlap of their top-k layers
(Jaccard) and the rank correlation of their layer scores (Spearman, Kendall's tau-b), each with
a 95% bootstrap CI over documents where both runs kept per-document scores (see
:mod:`sumcircuit.report.layer_agreement` for the relative-depth mapping between models of
different depth and for the resampling); beside them each run's verdicts on the paper's claims
and its circuit. ``RunComparison.save(dir)`` writes ``comparison.json`` and ``comparison.csv``
(one row per pair and locator); :func:`~sumcircuit.report.compare_plots.plot_profiles` draws the
layer profiles beside them.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.provenance import provenance
from sumcircuit.report.layer_agreement import agreement, agreement_ci
from sumcircuit.report.run_profiles import LocatorProfile, RunProfile, read_run
from sumcircuit.results import StageResult, write_table

__all__ = ["DEPTH_MAPPING", "MEASURES", "RunComparison", "compare_runs", "format_comparison"]

MEASURES = ("jaccard", "spearman", "kendall")
DEPTH_MAPPING = (
    "layer l of an L-layer model sits at relative depth (l + 0.5) / L; runs of different depth are "
    "compared on the shallower model's layers: layer l falls in bin floor((l + 0.5) / L * L_min), "
    "a bin's score is the mean of its layers' scores, and a top-k set is the set of bins its k "
    "layers fall in"
)
_HOLDS = {True: "holds", False: "fails", None: "undecided"}


@dataclass
class RunComparison(StageResult):
    """``runs``: each run's label (A, B, ...), path, model, depth, circuit, verdicts and
    per-locator layer scores and top-k; ``pairs``: for each pair of runs, each shared locator's
    ``jaccard``, ``spearman``, ``kendall`` (``{"value", "ci95", "ci"}``: the CI, or None with
    ``ci`` saying why) and how documents were resampled."""

    FILE: ClassVar[str] = "comparison.json"
    STAGE: ClassVar[str] = "compare"
    TABLE_FILE: ClassVar[str] = "comparison.csv"

    runs: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    k: int
    n_boot: int
    seed: int
    depth_mapping: str = DEPTH_MAPPING
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fix(cls, directory: str | Path) -> str:
        return f"compare the runs again (sumcircuit compare RUN_A RUN_B --out {directory})"

    def to_frame(self) -> pd.DataFrame:
        """One row per pair of runs and shared locator: each measure, its CI bounds, the note."""
        rows = []
        for pair in self.pairs:
            for name, row in pair["locators"].items():
                out: dict[str, Any] = {"a": pair["a"], "b": pair["b"], "locator": name}
                out["n_layers"] = "/".join(str(n) for n in pair["n_layers"])
                for measure in MEASURES:
                    ci = row[measure]["ci95"] or (None, None)
                    out |= {measure: row[measure]["value"]}
                    out |= {f"{measure}_lo": ci[0], f"{measure}_hi": ci[1]}
                out |= {"resampling": row["resampling"], "ci": row["ci"]}
                rows.append(out)
        return pd.DataFrame(rows)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_table(directory / self.TABLE_FILE, self.to_frame())
        write_json(directory / self.FILE, self.to_dict())  # last: its presence marks completion
        return directory / self.FILE

    def labels(self) -> list[str]:
        return [run["label"] for run in self.runs]

    def run(self, label: str) -> dict[str, Any]:
        return next(run for run in self.runs if run["label"] == label)


def compare_runs(
    paths: list[str | Path], *, k: int | None = None, n_boot: int = 2000, seed: int = 0
) -> RunComparison:
    """Compare the run directories ``paths`` (two or more) pairwise; ``k``: the top-k size
    (default: the studies' ``locate.k``, which must then agree)."""
    if len(paths) < 2:
        raise SumcircuitError("compare needs at least two run directories")
    resolved = [Path(p).resolve() for p in paths]
    twice = [str(p) for p in paths if resolved.count(Path(p).resolve()) > 1]
    if twice:
        raise SumcircuitError(f"{twice[0]!r} is given twice; compare different run directories")
    if n_boot < 1:
        raise SumcircuitError(f"--n-boot must be at least 1; got {n_boot}")
    profiles = [read_run(p) for p in paths]
    k = _top_k_size(profiles, paths, k)
    labels = _labels(len(profiles))
    runs = [
        _run_entry(label, name, str(path), profile, k)
        for label, name, path, profile in zip(labels, _names(paths), paths, profiles, strict=True)
    ]
    pairs = [
        _pair_entry((labels[i], profiles[i]), (labels[j], profiles[j]), k, n_boot, seed)
        for i, j in itertools.combinations(range(len(profiles)), 2)
    ]
    config = {"runs": [str(p) for p in paths], "k": k, "n_boot": n_boot, "seed": seed}
    return RunComparison(
        runs=runs,
        pairs=pairs,
        k=k,
        n_boot=n_boot,
        seed=seed,
        provenance=provenance(config, seed=seed),
    )


def _labels(n: int) -> list[str]:
    letters = string.ascii_uppercase
    return list(letters[:n]) if n <= len(letters) else [f"R{i + 1}" for i in range(n)]


def _names(paths: list[str | Path]) -> list[str]:
    """Short names for figures: the folder's name, with as many parents as tell runs apart."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(x) for x in parts) + 1):
        names = ["/".join(x[-depth:]) for x in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _top_k_size(profiles: list[RunProfile], paths: list[str | Path], k: int | None) -> int:
    if k is None:
        recorded = {str(path): p.k for path, p in zip(paths, profiles, strict=True)}
        if None in recorded.values():
            missing = next(path for path, value in recorded.items() if value is None)
            raise SumcircuitError(f"{missing!r} records no locate.k; pass --k")
        if len(set(recorded.values())) > 1:
            listed = ", ".join(f"{value} ({path})" for path, value in recorded.items())
            raise SumcircuitError(f"the runs used different locate.k: {listed}; pass --k")
        k = next(iter(recorded.values()))
    for path, profile in zip(paths, profiles, strict=True):
        if profile.n_layers and not 1 <= k <= profile.n_layers:  # type: ignore[operator]
            raise SumcircuitError(
                f"--k {k} does not fit the {profile.n_layers} layers of {str(path)!r}; "
                f"use 1 to {profile.n_layers}"
            )
    return int(k)  # type: ignore[arg-type]


def _run_entry(label: str, name: str, path: str, profile: RunProfile, k: int) -> dict[str, Any]:
    return {
        "label": label,
        "path": path,
        "name": name,
        "model": profile.model,
        "data": profile.data,
        "n_layers": profile.n_layers,
        "k": profile.k,
        "circuit": profile.circuit,
        "claims": [
            {key: claim.get(key) for key in ("claim", "paper", "ours", "holds", "verdicts")}
            for claim in profile.claims
        ],
        "locators": {
            name: {
                "candidate": loc.candidate,
                "scores": [float(x) for x in loc.scores],
                "top_k": [int(x) for x in loc.ranking.top(k)],
                "per_doc": None if loc.parts is None else loc.parts.n_docs,
                "note": loc.note,
            }
            for name, loc in profile.locators.items()
        },
        "unread": dict(profile.unread),
        "notes": list(profile.notes),
    }


def _pair_entry(
    a: tuple[str, RunProfile], b: tuple[str, RunProfile], k: int, n_boot: int, seed: int
) -> dict[str, Any]:
    (label_a, run_a), (label_b, run_b) = a, b
    shared = [name for name in run_a.locators if name in run_b.locators]
    only = {
        name: [label for label, run in (a, b) if name in run.locators]
        for name in sorted(set(run_a.locators) ^ set(run_b.locators))
    }
    return {
        "a": label_a,
        "b": label_b,
        "n_layers": [run_a.n_layers, run_b.n_layers],
        "n_common": min(run_a.n_layers, run_b.n_layers),
        "locators": {
            name: _locator_agreement(
                (label_a, run_a.locators[name]), (label_b, run_b.locators[name]), k, n_boot, seed
            )
            for name in shared
        },
        "not_shared": only,
    }


def _locator_agreement(
    a: tuple[str, LocatorProfile], b: tuple[str, LocatorProfile], k: int, n_boot: int, seed: int
) -> dict[str, Any]:
    (_, loc_a), (_, loc_b) = a, b
    point = agreement(loc_a.scores, loc_b.scores, loc_a.ranking.top(k), loc_b.ranking.top(k))
    if loc_a.parts is not None and loc_b.parts is not None:
        boot = agreement_ci(loc_a.parts, loc_b.parts, k, n_boot=n_boot, seed=seed)
        note, resampling, n_docs = "", boot["resampling"], boot["n_docs"]
    else:
        boot = dict.fromkeys(MEASURES)
        notes = {label: loc.note for label, loc in (a, b) if loc.parts is None}
        note = (
            next(iter(notes.values()))
            if len(set(notes.values())) == 1
            else "; ".join(f"{label}: {text}" for label, text in notes.items())
        )
        note += f" ({'runs' if len(notes) > 1 else 'run'} {', '.join(notes)})"
        resampling, n_docs = None, None
    out: dict[str, Any] = {"top_k_bins": point["top_k_bins"]}
    for measure in MEASURES:
        ci = boot[measure]
        value = point[measure]
        out[measure] = {
            "value": None if value != value else value,  # NaN: a constant profile, no ranks
            "ci95": None if ci is None else list(ci),
            "ci": note or ("undefined in every resample" if ci is None else "bootstrap"),
        }
    return out | {"resampling": resampling, "n_docs": n_docs, "ci": note or "bootstrap"}


# -- the printed table ----------------------------------------------------------------------------
def _value(row: dict[str, Any]) -> str:
    value, ci = row["value"], row["ci95"]
    text = "  n/a" if value is None else f"{value:+.2f}"
    return text + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " [n/a]")


def format_comparison(result: RunComparison) -> str:
    """The comparison as text: the runs, each pair's agreement per locator, the verdicts."""
    lines = ["runs:"]
    for run in result.runs:
        circuit = run["circuit"] or {}
        located = (
            f"circuit layers {circuit.get('layers')} ({circuit.get('score')}, "
            f"{circuit.get('rule')})"
            if circuit
            else "no circuit"
        )
        lines.append(
            f"  {run['label']} = {run['path']}: {run['model']} on {run['data']}, "
            f"{run['n_layers']} layers; {located}"
        )
        lines += [f"      note: {text}" for text in run["notes"]]
        lines += [f"      {name} not read: {why}" for name, why in run["unread"].items()]
    lines.append("")
    lines.append(
        f"top-{result.k} layer overlap (Jaccard) and rank correlation of layer scores, 95% "
        f"bootstrap CI over documents ({result.n_boot} resamples, seed {result.seed}):"
    )
    header = (
        f"  {'locator':<15} {'top-k (bins)':<22} {'Jaccard':<22} {'Spearman':<22} "
        f"{'Kendall':<22} documents"
    )
    for pair in result.pairs:
        depths = pair["n_layers"]
        lines.append("")
        where = (
            "same layers"
            if depths[0] == depths[1]
            else f"on {pair['n_common']} relative-depth bins (layers {depths[0]} and {depths[1]})"
        )
        lines.append(f"{pair['a']} vs {pair['b']}, {where}:")
        lines.append(header)
        for name, row in pair["locators"].items():
            tops = " | ".join(",".join(str(x) for x in top) for top in row["top_k_bins"])
            docs = (
                f"{row['resampling']} ({'/'.join(str(n) for n in row['n_docs'])})"
                if row["resampling"]
                else row["ci"]
            )
            lines.append(
                f"  {name:<15} {tops:<22} {_value(row['jaccard']):<22} "
                f"{_value(row['spearman']):<22} {_value(row['kendall']):<22} {docs}"
            )
        for name, having in pair["not_shared"].items():
            lines.append(f"  {name:<15} only in {', '.join(having)}: not compared")
    lines.append("")
    lines += _verdict_lines(result)
    return "\n".join(lines)


def _verdict_lines(result: RunComparison) -> list[str]:
    """The paper's claims, one row each, one column of verdicts per run (aligned by claim)."""
    claims: list[str] = []
    for run in result.runs:
        claims += [c["claim"] for c in run["claims"] if c["claim"] not in claims]
    if not claims:
        return ["verdicts: no run has a summary.json"]
    labels = result.labels()
    out = [
        "verdicts on the paper's claims:",
        f"  {'claim':<62} " + " ".join(f"{x:<10}" for x in labels),
    ]
    for claim in claims:
        cells = []
        for run in result.runs:
            found = [c for c in run["claims"] if c["claim"] == claim]
            cells.append(_HOLDS.get(found[0]["holds"], "?") if found else "-")
        text = claim if len(claim) <= 62 else claim[:59] + "..."
        out.append(f"  {text:<62} " + " ".join(f"{c:<10}" for c in cells))
    for run in result.runs:
        for claim in run["claims"]:
            if claim.get("ours"):
                out.append(f"  {run['label']}: {claim['ours']}")
    return out
