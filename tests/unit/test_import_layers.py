"""Package layering: evaluation never imports training, training and analysis share the
process-group code and the model loaders without importing each other's stages."""

import json
import subprocess
import sys

from sumcircuit.models.trained import TRAINING_RECORD
from sumcircuit.training.config import RESULT_FILE


def imported_by(module: str) -> set[str]:
    """The ``sumcircuit`` modules a fresh interpreter holds after ``import module``."""
    code = (
        "import json, sys\n"
        f"import {module}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sumcircuit'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_evaluation_does_not_import_training():
    modules = imported_by("sumcircuit.evaluation.evaluate")
    assert "sumcircuit.models.trained" in modules  # load_trained lives with the models
    assert not {m for m in modules if m.startswith("sumcircuit.training")}


def test_diff_imports_no_training_or_evaluation():
    modules = imported_by("sumcircuit.analysis.diff")
    assert {"sumcircuit.distributed", "sumcircuit.models.pair"} <= modules
    assert not {
        m for m in modules if m.startswith(("sumcircuit.training", "sumcircuit.evaluation"))
    }


def test_trained_model_loader_reads_the_file_training_writes():
    assert TRAINING_RECORD == RESULT_FILE
