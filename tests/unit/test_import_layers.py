"""Package layering: evaluation never imports training, training and analysis share the
process-group code and the model loaders without importing each other's stages."""

import json
import subprocess
import sys


def imported_by(*modules: str) -> set[str]:
    """The ``sumcircuit`` modules a fresh interpreter holds after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sumcircuit'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_evaluation_does_not_import_training():
    modules = imported_by("sumcircuit.evaluation.evaluate")
    assert "sumcircuit.models.trained" in modules  # load_trained lives with the models
    assert not {m for m in modules if m.startswith("sumcircuit.training")}


def test_shared_modules_import_no_training_or_evaluation():
    """What both training and analysis/evaluation use: the process group, the model pair and
    trained-model loaders, the circuit, and the diff (which shards through Processes)."""
    shared = (
        "distributed",
        "models.pair",
        "models.trained",
        "analysis.locate.circuit",
        "analysis.diff.run",
    )
    modules = imported_by(*(f"sumcircuit.{name}" for name in shared))
    assert not {
        m for m in modules if m.startswith(("sumcircuit.training", "sumcircuit.evaluation"))
    }


def test_report_imports_no_study():
    """The report reads the study's summary through a class below ``study/``."""
    modules = imported_by(
        "sumcircuit.report.html", "sumcircuit.report.figures", "sumcircuit.report.summary_result"
    )
    assert "sumcircuit.report.summary_result" in modules
    assert not {m for m in modules if m.startswith(("sumcircuit.study", "sumcircuit.commands"))}


def test_no_lower_package_imports_study_or_commands():
    """Every module outside ``study/``, ``commands/`` and the CLI, imported together, pulls in
    neither: the study orchestrates the stages, never the other way round."""
    import pkgutil

    import sumcircuit

    lower = [
        info.name
        for info in pkgutil.walk_packages(sumcircuit.__path__, "sumcircuit.")
        if not info.name.startswith(("sumcircuit.study", "sumcircuit.commands", "sumcircuit.cli"))
    ]
    assert "sumcircuit.analysis.locate.registry" in lower and len(lower) > 50
    modules = imported_by(*lower)
    assert not {m for m in modules if m.startswith(("sumcircuit.study", "sumcircuit.commands"))}
