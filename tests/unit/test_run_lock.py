"""One `sumcircuit run` per run directory (study/lock.py), and the run directory's study.json."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.study.config import build_config
from sumcircuit.study.lock import run_lock
from sumcircuit.study.run import check_run_dir

HOLDER = """
import sys
from sumcircuit.layout import RunLayout
from sumcircuit.study.lock import run_lock
with run_lock(RunLayout(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _holder(root: Path) -> subprocess.Popen:
    """Another process running in ``root`` (holding its lock until killed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_is_refused_while_the_first_is_alive_and_takes_over_once_it_died(
    tmp_path: Path, caplog
) -> None:
    layout = RunLayout(tmp_path / "run")
    first = _holder(layout.root)
    try:
        record = json.loads(layout.lock_file.read_text())
        assert record["pid"] == first.pid
        with pytest.raises(SumcircuitError, match=rf"^'{layout.root}' is in use by another "
                           rf"sumcircuit run \(pid {first.pid} on "):  # fmt: skip
            with run_lock(layout):
                pytest.fail("entered a directory another live run holds")
        assert json.loads(layout.lock_file.read_text()) == record  # not touched
    finally:
        first.send_signal(signal.SIGKILL)  # killed: no cleanup, its lock file stays
        first.wait()
    assert json.loads(layout.lock_file.read_text())["pid"] == first.pid  # a stale lock
    with caplog.at_level(logging.WARNING, logger="sumcircuit"):
        with run_lock(layout):
            assert json.loads(layout.lock_file.read_text())["pid"] == os.getpid()
    assert f"of a run that is no longer alive (pid {first.pid} on " in caplog.text
    assert not layout.lock_file.exists()  # a finished run removes it


def test_a_lock_file_without_a_holder_is_taken_over(tmp_path: Path, caplog) -> None:
    layout = RunLayout(tmp_path)
    layout.lock_file.write_text(json.dumps({"pid": 2**22 + 7, "host": "elsewhere"}))
    with caplog.at_level(logging.WARNING, logger="sumcircuit"):
        with run_lock(layout):
            pass
    assert f"(pid {2**22 + 7} on elsewhere)" in caplog.text and not layout.lock_file.exists()


def test_the_lock_is_held_in_one_process_too_and_released_on_error(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "new" / "run")
    with pytest.raises(RuntimeError):
        with run_lock(layout):
            with pytest.raises(SumcircuitError, match="is in use by another sumcircuit run"):
                with run_lock(layout):
                    pass
            raise RuntimeError("a stage failed")
    assert not (tmp_path / "new").exists()  # created for the lock, empty again: removed
    with run_lock(layout):
        (layout.root / "kept.txt").write_text("x")
    assert (layout.root / "kept.txt").exists() and not layout.lock_file.exists()


@pytest.mark.parametrize(
    "content", ["[1, 2]\n", '{"model": ', "", '"a string"\n', "\xff"], ids=repr
)
def test_a_damaged_study_json_is_one_sentence_and_kept(tmp_path: Path, content: str) -> None:
    config = build_config()
    marker = RunLayout(tmp_path).study_file
    marker.write_text(content, encoding="latin-1")
    (tmp_path / "diff").mkdir()
    with pytest.raises(SumcircuitError, match=r"study\.json' is damaged \(not a JSON object "
                       r"naming the study's model and data\).*pass --overwrite$"):  # fmt: skip
        check_run_dir(tmp_path, config, overwrite=False)
    assert marker.read_text(encoding="latin-1") == content and (tmp_path / "diff").is_dir()
    with run_lock(RunLayout(tmp_path)):  # --overwrite clears it, except the lock being held
        check_run_dir(tmp_path, config, overwrite=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock", "study.json"]
    assert json.loads(marker.read_text())["model"] == config.model


def test_a_directory_holding_only_a_stale_lock_is_no_stray_content(tmp_path: Path) -> None:
    RunLayout(tmp_path).lock_file.write_text('{"pid": 1}')
    check_run_dir(tmp_path, build_config(), overwrite=False)
    assert RunLayout(tmp_path).study_file.exists()
    (tmp_path / "notes.txt").write_text("mine")
    RunLayout(tmp_path).study_file.unlink()
    with pytest.raises(SumcircuitError, match="is not empty and holds no sumcircuit study"):
        check_run_dir(tmp_path, build_config(), overwrite=False)
