"""Never analyse the wrong weights: every load is strict and checked.

Tiny models built from configs stand in for real ones: a fine-tune missing one tensor, a config
with another model's weights, a tensor of another shape, garbage bytes, a run folder whose
fine-tune was replaced after training, an adapter whose weights do not match its config, and a
cached preset whose weights were changed in place (same size and mtime) — each is refused with one
sentence naming the file, never loaded with random values or silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import SAMPLE_BLOCK, SAMPLE_STRIDE, cache_dir, read_json, sha256_file, write_json
from sumcircuit.models.loader import load_model, verify_model, weights_checksums
from sumcircuit.models.pair import check_pair
from sumcircuit.models.tiny import gpt2_tokenizer, save_tiny, tiny_config
from sumcircuit.models.trained import load_trained

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SIZES = dict(n_layers=3, n_heads=4, n_kv_heads=2, hidden=32)
TRAIN = "--limit 4 --max-length 64 --batch-size 2 --val-limit 2 --no-progress"
QUICK = "--limit 2 --max-length 64 --batch-size 2"
PRESET = "smollm2-135m"
WEIGHTS = "model.safetensors"


# -- helpers -----------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_weights(folder: Path, edit) -> Path:
    """Rewrite ``folder/model.safetensors`` as ``edit(state dict)``."""
    path = folder / WEIGHTS
    tensors = edit(load_file(str(path)))
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _without(key: str):
    def edit(tensors: dict) -> dict:
        assert key in tensors, sorted(tensors)[:5]
        return {k: v for k, v in tensors.items() if k != key}

    return edit


def _one_line(argv: str, capfd, tmp_path: Path) -> str:
    """Run the CLI; it must exit 2 with one ``error:`` line and write no ``--out``."""
    capfd.readouterr()
    code = main(argv.split())
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "out").exists(), "a refused command wrote its --out"
    return lines[0]


def _negate(weights: Path, count: int, at: int) -> None:
    """Negate ``count`` float32 weights from byte ``at`` of the tensor data, in place, keeping
    the file's size and modification time (what bit rot or a careful edit leaves)."""
    stat = weights.stat()
    with open(weights, "r+b") as fh:
        start = 8 + int.from_bytes(fh.read(8), "little") + at
        fh.seek(start)
        values = np.frombuffer(fh.read(4 * count), dtype=np.float32)
        assert np.count_nonzero(values) > count // 2
        fh.seek(start)
        fh.write((-values).tobytes())
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strict")
    return {
        "llama": save_tiny("llama", root / "llama", **SIZES),
        "llama_seed1": save_tiny("llama", root / "llama_seed1", seed=1, **SIZES),
        "gpt2": save_tiny("gpt2", root / "gpt2", n_layers=3, n_heads=4, hidden=32),
    }


# -- strict loading ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "key"),
    [
        ("llama", "model.layers.1.self_attn.q_proj.weight"),
        ("gpt2", "transformer.h.1.mlp.c_fc.bias"),
    ],
)
def test_a_finetune_missing_one_tensor_is_refused(models, tmp_path, arch, key) -> None:
    folder = _copy(models[arch], tmp_path / "ft")
    path = _edit_weights(folder, _without(key))
    reports: list[str] = []  # transformers' multi-line report, which the sentence replaces
    handler = logging.Handler()
    handler.emit = lambda record: reports.append(record.getMessage())
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        with pytest.raises(SumcircuitError) as err:
            load_model(str(folder), device="cpu")
    finally:
        logger.removeHandler(handler)
    message = str(err.value)
    assert f"'{path}' does not hold the weights its config.json describes" in message
    assert f"1 tensor(s) it needs are missing ({key})" in message
    assert "\n" not in message
    assert not [r for r in reports if "LOAD REPORT" in r]


def test_a_missing_finetune_tensor_is_one_line_from_diff(models, tmp_path, capfd, xsum_sample):
    folder = _copy(models["llama_seed1"], tmp_path / "ft")
    _edit_weights(folder, _without("model.layers.2.mlp.up_proj.weight"))
    line = _one_line(
        f"diff --base {models['llama']} --finetuned {folder} --data {xsum_sample} {QUICK} "
        f"--out {tmp_path / 'out'}",
        capfd,
        tmp_path,
    )
    assert f"'{folder / WEIGHTS}' does not hold" in line
    assert "missing (model.layers.2.mlp.up_proj.weight)" in line


def test_a_tied_head_may_be_absent_only_where_the_config_ties_it(models, tmp_path) -> None:
    """GPT-2 ties its head to the embedding: its file has no lm_head.weight and loads. The same
    file under a config that unties them, or a Llama (untied) without its head, is refused: the
    model's own tie table decides, not the tensor's name."""
    assert "lm_head.weight" not in load_file(str(models["gpt2"] / WEIGHTS))
    loaded = load_model(str(models["gpt2"]), device="cpu").model
    assert torch.equal(loaded.lm_head.weight, loaded.transformer.wte.weight)

    untied = _copy(models["gpt2"], tmp_path / "untied")
    config = json.loads((untied / "config.json").read_text())
    (untied / "config.json").write_text(json.dumps(config | {"tie_word_embeddings": False}))
    with pytest.raises(SumcircuitError, match=r"missing \(lm_head\.weight\)"):
        load_model(str(untied), device="cpu")

    headless = _copy(models["llama"], tmp_path / "headless")
    _edit_weights(headless, _without("lm_head.weight"))
    with pytest.raises(SumcircuitError, match=r"missing \(lm_head\.weight\)"):
        load_model(str(headless), device="cpu")


def test_a_config_with_another_models_weights_is_refused(models, tmp_path, capfd, xsum_sample):
    folder = _copy(models["llama"], tmp_path / "llama_config_gpt2_weights")
    shutil.copyfile(models["gpt2"] / WEIGHTS, folder / WEIGHTS)
    with pytest.raises(SumcircuitError) as err:
        load_model(str(folder), device="cpu")
    message = str(err.value)
    assert "(LlamaForCausalLM)" in message
    assert "tensor(s) it needs are missing (lm_head.weight, model.embed_tokens.weight" in message
    assert "are not part of it (transformer.h.0.attn.c_attn.bias" in message
    line = _one_line(
        f"diff --base {models['llama']} --finetuned {folder} --data {xsum_sample} {QUICK} "
        f"--out {tmp_path / 'out'}",
        capfd,
        tmp_path,
    )
    assert f"'{folder / WEIGHTS}' does not hold the weights" in line


def test_a_tensor_of_another_shape_is_refused(models, tmp_path) -> None:
    folder = _copy(models["llama"], tmp_path / "ft")
    key = "model.layers.0.self_attn.o_proj.weight"
    _edit_weights(folder, lambda t: t | {key: torch.zeros(33, 32)})
    with pytest.raises(SumcircuitError) as err:
        load_model(str(folder), device="cpu")
    assert (
        f"1 tensor(s) have another shape ({key} (33, 32) in the file, (32, 32) in the model)"
        in (str(err.value))
    )


def test_garbage_weights_are_one_sentence_naming_the_file(models, tmp_path, capfd, xsum_sample):
    folder = _copy(models["llama_seed1"], tmp_path / "ft")
    (folder / WEIGHTS).write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(
        SumcircuitError, match=f"'{folder / WEIGHTS}' is not a readable safetensors"
    ):
        load_model(str(folder), device="cpu")
    line = _one_line(
        f"diff --base {models['llama']} --finetuned {folder} --data {xsum_sample} {QUICK} "
        f"--out {tmp_path / 'out'}",
        capfd,
        tmp_path,
    )
    assert f"'{folder / WEIGHTS}' is not a readable safetensors file" in line


# -- the pair check ----------------------------------------------------------------------------
def test_the_pair_check_compares_every_tensor_shape(models, tmp_path) -> None:
    """A fine-tune with a wider MLP has the same layers, heads and vocabulary: only its tensor
    shapes tell, and the pair check names one."""
    config = tiny_config("llama", **SIZES)
    config.intermediate_size = 3 * config.hidden_size
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "wide")
    gpt2_tokenizer().save_pretrained(tmp_path / "wide")
    base, wide = (load_model(str(p), device="cpu") for p in (models["llama"], tmp_path / "wide"))
    assert base.arch.describe() == wide.arch.describe()
    with pytest.raises(SumcircuitError) as err:
        check_pair(base, wide, stage="diff")
    message = str(err.value)
    assert "hold different tensors (9 tensor(s) of another shape" in message
    assert (
        "model.layers.0.mlp.down_proj.weight (32, 64) in the base, (32, 96) in the fine-tune"
        in (message)
    )
    check_pair(base, load_model(str(models["llama_seed1"]), device="cpu"), stage="diff")


# -- a run folder whose fine-tune was replaced -------------------------------------------------
@pytest.fixture(scope="module")
def full_run(models, tmp_path_factory, xsum_sample) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    argv = (
        f"finetune --model {models['llama']} --data {xsum_sample} --method full {TRAIN} --out {out}"
    )
    assert main(argv.split()) == 0
    return out


def test_a_finished_run_records_the_sha256_of_its_weights(full_run) -> None:
    record = read_json(full_run / "training.json")
    assert record["weights_sha256"] == {WEIGHTS: sha256_file(full_run / WEIGHTS)}
    loaded = load_model(str(full_run), device="cpu")
    assert loaded.identity["sha256"] == record["weights_sha256"][WEIGHTS]


# A study whose values fit the 3-layer model (the quick preset's sizes do not), so that `run`
# gets past its preflight to the fine-tune's checks.
FITS_3_LAYERS = (
    "--set locate.k=1 --set validate.controls=2 --set faithfulness.sizes=[1,2] "
    "--set faithfulness.control_sizes=[2]"
)


def test_a_forged_run_folder_finetune_is_refused(
    models, full_run, tmp_path, capfd, xsum_sample
) -> None:
    """Weights of the same shape put in place of the trained ones (and any manifest re-hashed):
    the sha256 recorded in training.json when they were trained no longer matches."""
    forged = _copy(full_run, tmp_path / "forged")
    shutil.copyfile(models["llama_seed1"] / WEIGHTS, forged / WEIGHTS)
    with pytest.raises(SumcircuitError) as err:
        load_model(str(forged), device="cpu")
    assert (
        f"the weights '{forged / WEIGHTS}' do not match the sha256 recorded in training.json"
        in (str(err.value))
    )
    for argv in (
        f"diff --base {models['llama']} --finetuned {forged} --data {xsum_sample} {QUICK}",
        f"run --model {models['llama']} --finetuned {forged} --data {xsum_sample} {FITS_3_LAYERS}",
    ):
        line = _one_line(f"{argv} --out {tmp_path / 'out'}", capfd, tmp_path)
        assert "do not match the sha256 recorded in training.json when they were trained" in line


def test_a_run_folder_with_another_architecture_is_refused_without_a_record(
    models, full_run, tmp_path
) -> None:
    """An older record (no sha256): the strict load still refuses other-architecture weights."""
    forged = _copy(full_run, tmp_path / "forged")
    record = read_json(forged / "training.json")
    del record["weights_sha256"]
    write_json(forged / "training.json", record)
    assert load_model(str(forged), device="cpu").identity["sha256"]  # loads while untouched
    shutil.copyfile(models["gpt2"] / WEIGHTS, forged / WEIGHTS)
    with pytest.raises(SumcircuitError, match="does not hold the weights its config.json"):
        load_model(str(forged), device="cpu")


# -- an adapter whose weights do not match its config ------------------------------------------
@pytest.fixture(scope="module")
def lora_run(models, tmp_path_factory, xsum_sample) -> Path:
    out = tmp_path_factory.mktemp("lora") / "run"
    argv = f"finetune --model {models['llama']} --data {xsum_sample} --layers 0,1,2 {TRAIN}"
    assert main([*argv.split(), "--out", str(out)]) == 0
    return out


def _rehash(run: Path) -> None:
    """Record the adapter file's current sha256, as a forger (or another tool) would."""
    record = read_json(run / "training.json")
    record["weights_sha256"] = {
        "adapter_model.safetensors": sha256_file(run / "adapter_model.safetensors")
    }
    write_json(run / "training.json", record)


def _evaluate(models, run: Path, data: str, tmp_path: Path) -> str:
    return (
        f"evaluate --model {models['llama']} --adapter {run} --data {data} --split test "
        f"--limit 2 --out {tmp_path / 'out'}/e.json"
    )


def _refused_without_peft_warnings(models, run: Path) -> None:
    """The adapter is refused with one sentence, and peft's own warnings (a list of keys on
    stderr) are not shown beside it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SumcircuitError, match="do not match its adapter_config.json"):
            load_trained(str(models["llama"]), run, device="cpu")
    assert not [
        w for w in caught if "PeftModel" in str(w.message) or "adapter keys" in str(w.message)
    ]


def test_an_intact_adapter_loads(models, lora_run) -> None:
    loaded = load_trained(str(models["llama"]), lora_run, device="cpu")
    layers = {n.split(".layers.")[1].split(".")[0] for n, _ in loaded.model.named_parameters()
              if "lora_A" in n}  # fmt: skip
    assert layers == {"0", "1", "2"}


def test_adapter_weights_covering_fewer_layers_than_its_config_are_refused(
    models, lora_run, tmp_path, capfd, xsum_sample
) -> None:
    run = _copy(lora_run, tmp_path / "lora")
    weights = run / "adapter_model.safetensors"
    kept = {k: v for k, v in load_file(str(weights)).items() if ".layers.2." not in k}
    save_file(kept, str(weights), metadata={"format": "pt"})
    with pytest.raises(SumcircuitError, match="do not match the sha256 recorded"):
        load_trained(str(models["llama"]), run, device="cpu")
    _rehash(run)
    _refused_without_peft_warnings(models, run)
    line = _one_line(_evaluate(models, run, xsum_sample, tmp_path), capfd, tmp_path)
    assert f"the adapter weights '{weights}' do not match its adapter_config.json" in line
    assert "tensor(s) it configures are missing (base_model.model.model.layers.2." in line


def test_adapter_target_modules_that_differ_from_its_weights_are_refused(
    models, lora_run, tmp_path, capfd, xsum_sample
) -> None:
    run = _copy(lora_run, tmp_path / "lora")
    config = json.loads((run / "adapter_config.json").read_text())
    assert any(m.endswith("q_proj") for m in config["target_modules"])
    config["target_modules"] = [
        m.replace("self_attn.q_proj", "mlp.up_proj") for m in config["target_modules"]
    ]
    (run / "adapter_config.json").write_text(json.dumps(config))
    line = _one_line(_evaluate(models, run, xsum_sample, tmp_path), capfd, tmp_path)
    assert "do not match its adapter_config.json" in line
    assert "it configures are missing (base_model.model.model.layers.0.mlp.up_proj" in line
    assert "it does not configure (base_model.model.model.layers.0.self_attn.q_proj" in line


def test_adapter_weights_of_another_rank_are_refused(
    models, lora_run, tmp_path, capfd, xsum_sample
) -> None:
    run = _copy(lora_run, tmp_path / "lora")
    weights = run / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in sorted(tensors) if "lora_A" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_file(tensors, str(weights), metadata={"format": "pt"})
    _rehash(run)
    _refused_without_peft_warnings(models, run)
    line = _one_line(_evaluate(models, run, xsum_sample, tmp_path), capfd, tmp_path)
    assert (
        f"1 tensor(s) have another shape (e.g. {key} (9, 32) in the file, (8, 32) configured)"
        in line
    )


# -- packaged-model caches, verified by content ------------------------------------------------
@pytest.fixture
def tiny_cache(models, tmp_path, monkeypatch) -> Path:
    """A tiny Llama cached under the preset's name, with the record a fetch writes."""
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    target = cache_dir("models", PRESET)
    for f in models["llama"].iterdir():
        shutil.copy2(f, target / f.name)
    write_json(
        target / "sumcircuit-cache.json",
        {"name": PRESET, "source": "test"} | weights_checksums(target / WEIGHTS),
    )
    return target


def test_a_cache_with_weights_negated_in_place_is_refused(tiny_cache, capfd) -> None:
    loaded = load_model(PRESET, device="cpu")
    record = read_json(tiny_cache / "sumcircuit-cache.json")
    assert loaded.identity["sampled_sha256"] == record["sampled_sha256"]
    assert loaded.identity["sha256"] == record["sha256"]
    _negate(tiny_cache / WEIGHTS, 1_000_000, at=4096)
    with pytest.raises(SumcircuitError) as err:
        load_model(PRESET, device="cpu")
    message = str(err.value)
    assert f"the cached weights {tiny_cache / WEIGHTS} changed after they were fetched" in message
    assert f"run `sumcircuit models fetch {PRESET} --force`" in message
    assert main(["models", "verify", PRESET]) == 2
    assert "not the " + record["sha256"][:16] + " recorded" in capfd.readouterr().err


def test_a_cache_of_another_size_is_refused(tiny_cache) -> None:
    with open(tiny_cache / WEIGHTS, "ab") as fh:
        fh.write(b"\0" * 8)
    with pytest.raises(SumcircuitError, match="bytes, not the .* fetched: bit rot"):
        load_model(PRESET, device="cpu")


def test_verify_finds_what_the_sampled_check_does_not_read(tiny_cache, capfd) -> None:
    """One byte between the samples: only the full sha256 (``models verify``) sees it."""
    assert main(["models", "verify", PRESET]) == 0
    assert "ok, sha256" in capfd.readouterr().out
    weights = tiny_cache / WEIGHTS
    stat = weights.stat()
    offset = 3 * SAMPLE_STRIDE + SAMPLE_BLOCK + 100  # inside the data, outside every sample
    with open(weights, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x80]))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(SumcircuitError, match="have sha256 .* recorded when they were fetched"):
        verify_model(PRESET)


def test_a_record_without_a_sampled_sha256_is_checked_in_full_once(tiny_cache) -> None:
    path = tiny_cache / "sumcircuit-cache.json"
    record = read_json(path)
    write_json(path, {k: v for k, v in record.items() if k != "sampled_sha256"})
    load_model(PRESET, device="cpu")
    assert read_json(path)["sampled_sha256"] == record["sampled_sha256"]
    write_json(path, {k: v for k, v in record.items() if k != "sampled_sha256"})
    _negate(tiny_cache / WEIGHTS, 1000, at=4096)
    with pytest.raises(SumcircuitError, match="recorded when they were fetched: bit rot"):
        load_model(PRESET, device="cpu")
    assert "sampled_sha256" not in read_json(path)


@pytest.mark.slow
def test_the_real_cache_with_a_million_weights_negated_is_refused(tmp_path, monkeypatch) -> None:
    """The real packaged smollm2-135m cache, copied first (the real one is never touched)."""
    real = Path.home() / ".cache" / "sumcircuit" / "models" / PRESET
    if os.environ.get("SUMCIRCUIT_CACHE"):
        real = Path(os.environ["SUMCIRCUIT_CACHE"]) / "models" / PRESET
    if not (real / WEIGHTS).is_file():
        pytest.skip(f"{PRESET} is not fetched (sumcircuit models fetch {PRESET})")
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    copy = shutil.copytree(real, tmp_path / "cache" / "models" / PRESET)  # copy2 keeps mtimes
    loaded = load_model(PRESET, device="cpu")
    record = read_json(copy / "sumcircuit-cache.json")
    assert loaded.identity["sampled_sha256"] == record["sampled_sha256"]
    assert verify_model(PRESET)["sha256"] == record["sha256"]
    del loaded
    _negate(copy / WEIGHTS, 1_000_000, at=200_000_000)  # mid-file, inside the layers
    with pytest.raises(SumcircuitError, match=f"changed after they were fetched.*{PRESET} --force"):
        load_model(PRESET, device="cpu")
    with pytest.raises(SumcircuitError, match="recorded when they were fetched"):
        verify_model(PRESET)


def test_verify_of_a_preset_not_fetched_says_how(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("SUMCIRCUIT_CACHE", str(tmp_path / "cache"))
    assert main(["models", "verify", PRESET]) == 2
    err = capfd.readouterr().err
    assert err == f"error: {PRESET} is not fetched yet; run `sumcircuit models fetch {PRESET}`\n"
