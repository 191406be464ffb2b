"""Checkpoints hold no pickle: they round-trip an optimizer, scheduler and RNG states through
safetensors + JSON, refuse a planted pickle without running it, and name a damaged file."""

import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from sumcircuit.errors import SumcircuitError
from sumcircuit.training.checkpoint import (
    CHECKPOINT,
    LEGACY_PICKLE,
    SIDECAR,
    checkpoint_info,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from sumcircuit.training.schedule import make_scheduler


def _trained_state():
    param = torch.nn.Parameter(torch.randn(3, 4))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    scheduler = make_scheduler(optimizer, 10, 2, "linear")
    for _ in range(2):
        param.square().sum().backward()
        optimizer.step()
        scheduler.step()
    blob = {
        "trainable": {"w": param.detach().clone()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "progress": {"epoch": 1, "step": 2, "epochs": [{"val_loss": 1.5}], "step_losses": [2.0]},
    }
    return blob, optimizer, scheduler


def test_round_trip_restores_optimizer_scheduler_and_rng(tmp_path) -> None:
    blob, optimizer, scheduler = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [SIDECAR, CHECKPOINT]
    assert checkpoint_info(tmp_path) == {"config_hash": "abc", "step": 2}
    back = load_checkpoint(tmp_path)
    assert torch.equal(back["trainable"]["w"], blob["trainable"]["w"])
    assert back["progress"] == blob["progress"]
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3, 4))], lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(
            fresh.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key]
        )
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    again = make_scheduler(fresh, 10, 2, "linear")
    again.load_state_dict(back["scheduler"])
    assert again.get_last_lr() == scheduler.get_last_lr()
    set_rng_states(back["rng"])
    drawn = (torch.rand(3), random.random(), np.random.rand())
    set_rng_states(blob["rng"])
    assert torch.equal(drawn[0], torch.rand(3))
    assert drawn[1:] == (random.random(), np.random.rand())


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_is_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / LEGACY_PICKLE).write_bytes(pickle.dumps({"trainable": _Exploit(marker)}))
    (tmp_path / SIDECAR).write_text(json.dumps({"config_hash": "abc", "step": 5}))
    with pytest.raises(SumcircuitError, match="pickle.*not loaded because unpickling can run code"):
        checkpoint_info(tmp_path)
    assert not marker.exists()


def test_planted_pickle_stops_finetune_resume_without_running(tmp_path, tiny_dirs, capsys) -> None:
    from sumcircuit.cli import main

    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    (out / LEGACY_PICKLE).write_bytes(pickle.dumps(_Exploit(marker)))
    (out / SIDECAR).write_text(json.dumps({"config_hash": "anything", "step": 5}))
    argv = ["finetune", "--model", str(tiny_dirs["llama"]), "--out", str(out), "--resume"]
    assert main(argv) == 2
    assert "not loaded because unpickling can run code" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_structure"])
def test_damaged_checkpoint_is_one_sentence_naming_the_file(tmp_path, damage) -> None:
    blob, _, _ = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    path = tmp_path / CHECKPOINT
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(SumcircuitError, match=f"checkpoint {path} is damaged"):
        load_checkpoint(tmp_path)


def test_damaged_sidecar_is_one_sentence(tmp_path) -> None:
    blob, _, _ = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    (tmp_path / SIDECAR).write_text('{"config_hash": "ab')
    with pytest.raises(SumcircuitError, match="is damaged"):
        checkpoint_info(tmp_path)


def test_a_sidecar_without_a_config_hash_is_one_sentence(tmp_path) -> None:
    blob, _, _ = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    (tmp_path / SIDECAR).write_text(json.dumps({"step": 2}))
    with pytest.raises(SumcircuitError, match=f"{tmp_path / SIDECAR} is damaged \\(no config hash"):
        checkpoint_info(tmp_path)


@pytest.mark.parametrize(
    "forged", [{"config_hash": "abc", "step": 7}, {"config_hash": "x", "step": 2}]
)
def test_a_sidecar_that_does_not_describe_its_checkpoint_is_refused(tmp_path, forged) -> None:
    """Edited, or copied beside another run's checkpoint: the checkpoint carries its own copy."""
    blob, _, _ = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    assert load_checkpoint(tmp_path)["progress"]["step"] == 2
    (tmp_path / SIDECAR).write_text(json.dumps(forged))
    with pytest.raises(SumcircuitError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert message.startswith(
        f"the checkpoint sidecar {tmp_path / SIDECAR} does not describe {tmp_path / CHECKPOINT}"
    )


def test_a_checkpoint_of_other_tensors_is_refused_by_name(tmp_path) -> None:
    from sumcircuit.training.checkpoint import restore_trainable, restoring

    blob, _, _ = _trained_state()
    save_checkpoint(tmp_path, blob, {"config_hash": "abc", "step": 2})
    saved = load_checkpoint(tmp_path)
    mine = {"w": torch.zeros(3, 4)}
    restore_trainable(tmp_path, saved["trainable"], mine)
    assert torch.equal(mine["w"], blob["trainable"]["w"])
    for other in ({"w": torch.zeros(4, 3)}, {"v": torch.zeros(3, 4)}):
        with pytest.raises(SumcircuitError, match="is damaged \\(its trainable tensors are not"):
            restore_trainable(tmp_path, saved["trainable"], other)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3, 4))], lr=1e-3)
    state = saved["optimizer"]
    state["param_groups"][0]["params"] = [0, 1]  # two parameters in a one-parameter optimizer
    with pytest.raises(
        SumcircuitError,
        match=f"checkpoint {tmp_path / CHECKPOINT} is damaged \\(it does not fit this run",
    ):
        with restoring(tmp_path):
            optimizer.load_state_dict(state)


def test_a_forged_sidecar_stops_finetune_resume_with_one_line(
    tmp_path, tiny_dirs, xsum_sample, capsys
) -> None:
    from sumcircuit.cli import main

    out = tmp_path / "run"
    argv = ["finetune", "--model", str(tiny_dirs["llama"]), "--data", xsum_sample, "--limit", "4",
            "--max-length", "48", "--batch-size", "2", "--val-limit", "0", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert main([*argv, "--max-steps", "1"]) == 0
    info = json.loads((out / SIDECAR).read_text())
    (out / SIDECAR).write_text(json.dumps(dict(info, step=info["step"] + 5)))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"error: the checkpoint sidecar {out / SIDECAR} does not describe" in lines[0]
