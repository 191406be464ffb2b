"""Checks made before work starts (an output that cannot be written, a circuit that does not
parse) and a disk that runs full mid-run: one sentence each, no model loaded, the last good
checkpoint kept."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from safetensors import SafetensorError

import sumcircuit.models.loader as loader
import sumcircuit.models.pair as pair
import sumcircuit.training.checkpoint as checkpoint
import sumcircuit.training.loop as loop
from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import check_writable_dir, check_writable_file, disk_full
from sumcircuit.training import FinetuneConfig, finetune
from sumcircuit.training.checkpoint import checkpoint_info, load_checkpoint


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any command loads a model: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output check")

    for module in (loader, pair, loop):
        monkeypatch.setattr(module, "load_model", refuse)


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_check_writable_dir(tmp_path: Path) -> None:
    made = check_writable_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()  # the write test leaves nothing behind, not even the dir
    kept = check_writable_dir(tmp_path)
    assert kept == tmp_path and not list(tmp_path.iterdir())
    del made
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(SumcircuitError, match="is a file, not a directory"):
        check_writable_dir(file)
    with pytest.raises(SumcircuitError, match="--out .*sub' cannot be created"):
        check_writable_dir(file / "sub")
    with pytest.raises(SumcircuitError, match="cannot be created|not writable"):
        check_writable_dir("/proc/sumcircuit-test")
    with pytest.raises(SumcircuitError, match=r"GiB free but this needs about .*choose another"):
        check_writable_dir(tmp_path, need_bytes=1 << 60)
    with pytest.raises(SumcircuitError, match="--circuit .* is a directory"):
        check_writable_file(tmp_path, "--circuit")
    with pytest.raises(SumcircuitError, match="c.json' cannot be written: .*file' is a file"):
        check_writable_file(file / "c.json")


def test_disk_full_is_one_sentence_keeping_the_old_file(tmp_path: Path) -> None:
    from sumcircuit.io import atomic_path, write_text

    path = tmp_path / "result.json"
    write_text(path, "old")
    with pytest.raises(SumcircuitError) as info, atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value).startswith(f"no space left on device writing {path}; free space")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with pytest.raises(SumcircuitError, match="step 3"), disk_full(path, "step 3 is kept"):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")
    with (
        pytest.raises(SumcircuitError, match="writing x.safetensors; "),
        disk_full("x.safetensors"),
    ):
        raise SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull })"
            " No space left on device (os error 28)"
        )
    with pytest.raises(OSError, match="denied"), disk_full(path):
        raise OSError(errno.EACCES, "Permission denied")  # other errors pass through


@pytest.mark.parametrize("command", ["diff", "finetune", "run"])
def test_an_output_that_is_a_file_stops_before_any_model_loads(
    command: str, tiny_dirs, tmp_path: Path, capsys, no_models
) -> None:
    file = tmp_path / "taken"
    file.write_text("x")
    model = str(tiny_dirs["gpt2"])
    argv = {
        "diff": ["diff", "--base", model, "--finetuned", model, "--out", str(file)],
        "finetune": ["finetune", "--model", model, "--out", str(file)],
        "run": ["run", "--model", model, "--out", str(file)],
    }[command]
    assert main(argv) == 2
    assert f"--out {str(file)!r} is a file, not a directory" in _one_line(capsys)


@pytest.mark.parametrize("out", ["FILE/sub", "/proc/sumcircuit-test"])
def test_an_unwritable_out_stops_finetune_and_run_before_any_model_loads(
    out: str, tiny_dirs, tmp_path: Path, capsys, no_models
) -> None:
    file = tmp_path / "FILE"
    file.write_text("x")
    out = out.replace("FILE", str(file))
    model = str(tiny_dirs["gpt2"])
    for argv in (
        ["finetune", "--model", model, "--out", out],
        ["run", "--model", model, "--out", out],
    ):
        assert main(argv) == 2, argv
        assert f"--out {out!r}" in _one_line(capsys)


def test_a_broken_circuit_stops_finetune_before_any_model_loads(
    tiny_dirs, tmp_path: Path, capsys, no_models
) -> None:
    circuit = tmp_path / "circuit.json"
    circuit.write_text('{"level": "layer", "layers": [1,')
    argv = ["finetune", "--model", str(tiny_dirs["gpt2"]), "--out", str(tmp_path / "ft")]
    assert main([*argv, "--circuit", str(circuit)]) == 2
    assert "circuit.json' is damaged" in _one_line(capsys)


def test_disk_full_mid_training_keeps_the_last_checkpoint(
    tiny_dirs, xsum_sample: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = checkpoint.save_file
    calls = {"n": 0}

    def full_on_second_checkpoint(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_bytes(b"partial")  # what a full disk leaves in the temp file
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_on_second_checkpoint)
    out = tmp_path / "ft"
    config = FinetuneConfig(
        model=str(tiny_dirs["gpt2"]), data=xsum_sample, out=str(out), limit=8, batch_size=2,
        max_length=64, epochs=1, checkpoint_every=1, val_limit=0, progress=False,
    )  # fmt: skip
    with pytest.raises(SumcircuitError) as info:
        finetune(config)
    message = str(info.value)
    assert message.startswith("no space left on device writing ") and "\n" not in message
    assert "the last checkpoint (step 1) is kept" in message
    assert checkpoint_info(out)["step"] == 1
    assert set(load_checkpoint(out)) >= {"trainable", "optimizer", "progress"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    json.dumps(checkpoint_info(out))  # the sidecar still parses
