"""The run directory's layout: every folder and file name of a study run, spelled once.

Below `study/` so that the report and the results can name a run's files too.

A *stage name* is the stage's folder relative to the run directory (``diff``,
``attribute/atp``, ``lora/targeted-s0``, ``evaluate/base``); the runner, the summary, the report
and the tests name stages and files through :class:`RunLayout` only, so moving a folder is a
one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout"]


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory ``root``."""

    root: Path

    # -- stage names (folders relative to the root) -------------------------------------------
    FINETUNE = "finetune"
    DIFF = "diff"
    EXACT = "exact"
    FAITHFULNESS = "faithfulness"
    LOCATE = "locate"
    VALIDATE = "validate"
    LORA = "lora"
    EVALUATE = "evaluate"
    ATTRIBUTE = "attribute"
    ADAPT = "adapt"  # adaptation scores of the base model (sumcircuit adapt)
    PROBE = "probe"  # inside the adapt stage: the short all-layer LoRA probe's run folder
    PLACEMENT = "placement"  # the placement curve: where LoRA helps most
    #: values several stages would compute alike (the base model's validation loss before
    #: training, which every fine-tuning stage starts from)
    CACHE = "cache"
    #: the evaluations that are not a LoRA arm: the base model and the full fine-tune
    BASE_EVAL = "base"
    FULL_EVAL = "full"

    # -- files of the run itself --------------------------------------------------------------
    STUDY_FILE = "study.json"
    LOCK_FILE = "run.lock"  # held while a `sumcircuit run` works in the directory
    SUMMARY_FILE = "summary.json"
    REPORT_FILE = "report.html"
    FIGURES = "report"  # figures the summary draws for the report
    DIFF_PLOTS = "plots"  # inside the diff stage

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def attribute(cls, method: str) -> str:
        """The stage of one attribution method."""
        return f"{cls.ATTRIBUTE}/{method}"

    @classmethod
    def locate(cls, locator: str | None = None) -> str:
        """The circuit stage: the study's own (``locate``) or one locator's (``locate-kl``)."""
        return cls.LOCATE if locator is None else f"{cls.LOCATE}-{locator}"

    @staticmethod
    def run_key(arm: str, seed: int) -> str:
        """One training run of an arm: ``targeted-s0``."""
        return f"{arm}-s{seed}"

    @classmethod
    def lora(cls, arm: str, seed: int) -> str:
        """The training stage of one arm and seed."""
        return f"{cls.LORA}/{cls.run_key(arm, seed)}"

    @classmethod
    def evaluate(cls, key: str) -> str:
        """The evaluation stage of ``base``, ``full`` or a run key (``targeted-s0``)."""
        return f"{cls.EVALUATE}/{key}"

    @classmethod
    def evaluated(cls, stage: str) -> str:
        """What an evaluation stage scores: ``evaluate/targeted-s0`` -> ``targeted-s0``."""
        return stage.removeprefix(f"{cls.EVALUATE}/")

    @staticmethod
    def kind(stage: str) -> str:
        """The kind of a stage (``lora/targeted-s0`` -> ``lora``), for time weights and logs."""
        return stage.split("/")[0]

    # -- paths ---------------------------------------------------------------------------------
    def path(self, stage: str) -> Path:
        return self.root / stage

    def __truediv__(self, stage: str) -> Path:
        return self.path(stage)

    @property
    def study_file(self) -> Path:
        return self.root / self.STUDY_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / self.LOCK_FILE

    @property
    def summary_file(self) -> Path:
        return self.root / self.SUMMARY_FILE

    @property
    def report_file(self) -> Path:
        return self.root / self.REPORT_FILE

    @property
    def figures(self) -> Path:
        return self.root / self.FIGURES

    def figure(self, stem: str) -> Path:
        """A report figure (its stem; the plotting function adds the suffix)."""
        return self.figures / stem

    def diff_plots(self) -> Path:
        return self.path(self.DIFF) / self.DIFF_PLOTS

    def pngs(self, stage: str) -> list[Path]:
        """The PNG figures a stage wrote into its folder (the diff's in its plots folder)."""
        folder = self.diff_plots() if stage == self.DIFF else self.path(stage)
        return sorted(folder.glob("*.png"))

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def resolve(self, relative: str) -> Path:
        """A path :meth:`relative` wrote (a figure the summary lists), back under the root."""
        return self.root / relative
