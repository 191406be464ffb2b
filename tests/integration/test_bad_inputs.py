"""Bad input, command by command, through ``cli.main``: each case must exit 2 with one line on
stderr that starts with ``error:`` and names the offending input, no traceback, and must write
nothing (its ``--out`` is not created) or lose nothing (an existing run's files are unchanged).

One table: ``(id, argv, expected)``. ``argv`` and ``expected`` are templates filled from the
fixture paths below (``{llama}``, ``{data}``, ``{out}``, ...). Cases marked ``KEEP`` name a
directory whose files must be byte-for-byte the same afterwards.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import load_model
from sumcircuit.models.tiny import gpt2_tokenizer, save_tiny

SIZES = dict(n_layers=3, n_heads=4, n_kv_heads=2, hidden=32)
QUICK = "--limit 2 --max-length 64 --batch-size 2"
TRAIN = "--limit 4 --max-length 64 --batch-size 2 --val-limit 2 --no-progress"
ONE_LINE_TAIL = "it/s]"  # progress bars (weights loading) are not messages
# A study that passes every check on the tiny 3-layer model: a 1-layer circuit (2 random
# control sets), curves at sizes 1 and 2 with random sets at 2.
RUN_OK = ("run --model {llama} --data {data} --set locate.k=1 --set validate.controls=2 "
          "--set faithfulness.sizes=[1,2] --set faithfulness.control_sizes=[2]")  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _circuit(path: Path, model: dict, **kwargs) -> str:
    fields = {"level": "layer", "rule": "manual", "score": "manual", "layers": [1]} | kwargs
    Circuit(model=model, **fields).save(path)
    return str(path)


# Holds an exclusive flock on a run directory's lock file, as a live `sumcircuit run` does,
# until its stdin closes.
HOLD_LOCK = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def _study_inputs(root: Path, request) -> dict[str, str]:
    """Bad study configs, data files nested too deeply, circuits with non-integer layers, run
    directories whose study.json is damaged, and one whose lock a live process holds."""
    e = {}
    (root / "dup.yaml").write_text("lora:\n  epochs: 1\n  epochs: 2\n")
    levels = ["    - &a0 [" + ", ".join(["standard"] * 9) + "]"]
    levels += [f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (root / "bomb.yaml").write_text("lora:\n  arms:\n" + "\n".join(levels) + "\n")  # 9^9 items
    (root / "aliases.yaml").write_text("x: &x 1\nlora: {arms: [" + ", ".join(["*x"] * 101) + "]}\n")
    (root / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    (root / "deep.yaml").write_text("lora: " + "[" * 5000 + "]" * 5000 + "\n")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep.jsonl").write_text('{"document": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    e.update({k: str(root / f"{k}.yaml") for k in ("dup", "bomb", "aliases", "binary", "deep")})
    e.update(deep_json=str(root / "deep.json"), deep_jsonl=str(root / "deep.jsonl"))
    circuit = json.loads((root / "circuit.json").read_text())
    for name, layers in (("float_circuit", [1.7]), ("bool_circuit", [True])):
        (root / f"{name}.json").write_text(json.dumps(circuit | {"layers": layers}) + "\n")
        e[name] = str(root / f"{name}.json")
    for name, text in (("list_study", "[1, 2]\n"), ("invalid_study", '{"model": ')):
        (root / name / "diff").mkdir(parents=True)
        (root / name / "study.json").write_text(text)
        (root / name / "diff" / "stage.json").write_text("{}\n")  # a finished stage's marker
        e[name] = str(root / name)
    (root / "locked").mkdir()
    (root / "locked" / "study.json").write_text('{"model": "x", "data": "y"}\n')
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "locked" / "run.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    request.addfinalizer(lambda: (holder.kill(), holder.wait()))
    assert holder.stdout.readline().strip() == "locked"
    e["locked"] = str(root / "locked")
    return e


@pytest.fixture(scope="module")
def env(tmp_path_factory, xsum_sample, request) -> dict[str, str]:
    """Tiny models, a LoRA run, two diffs, circuits and bad files (built once, ~10 s)."""
    root = tmp_path_factory.mktemp("bad")
    llama = save_tiny("llama", root / "llama", **SIZES)
    gpt2 = save_tiny("gpt2", root / "gpt2", n_layers=2, n_heads=2, hidden=16)
    model = load_model(str(llama)).model
    arch = Arch.from_model(model)
    gen = torch.Generator().manual_seed(1)
    for layer in range(arch.n_layers):
        weight = model.get_submodule(arch.proj_name(layer, "q")).weight
        weight.data += 0.5 * weight.std() * torch.randn(weight.shape, generator=gen)
    model.save_pretrained(root / "ft")
    gpt2_tokenizer().save_pretrained(root / "ft")
    e = {"llama": str(llama), "gpt2": str(gpt2), "ft": str(root / "ft"), "data": xsum_sample}
    e["lora"] = str(root / "lora")
    assert (
        main(f"finetune --model {llama} --data {xsum_sample} {TRAIN} --out {e['lora']}".split())
        == 0
    )
    e["diff"], e["zero_diff"] = str(root / "diff"), str(root / "zero_diff")
    for name, ft in (("diff", e["ft"]), ("zero_diff", e["llama"])):
        argv = f"diff --base {llama} --finetuned {ft} --data {xsum_sample} {QUICK} --n-boot 100"
        assert main([*argv.split(), "--out", e[name]]) == 0
    identity = load_model(str(llama)).identity
    ident = {k: identity.get(k) for k in ("name", "sha256", "model_type", "layers", "heads")}
    other = dict(ident, model_type="gpt2", layers=2, heads=2, name="gpt2")
    e["circuit"] = _circuit(root / "circuit.json", ident)
    e["empty_circuit"] = _circuit(root / "empty.json", ident, layers=[])
    e["other_circuit"] = _circuit(root / "other.json", other)
    text = Path(e["circuit"]).read_text()
    (root / "truncated.json").write_text(text[: len(text) // 2])
    e["truncated_circuit"] = str(root / "truncated.json")
    (root / "damaged_adapter").mkdir()
    for f in Path(e["lora"]).iterdir():
        (root / "damaged_adapter" / f.name).write_bytes(f.read_bytes())
    weights = root / "damaged_adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    e["damaged_adapter"] = str(root / "damaged_adapter")
    e["empty_data"] = str(root / "empty.jsonl")
    Path(e["empty_data"]).write_text("")
    (root / "latin1.jsonl").write_bytes(b'{"document": "caf\xe9 au lait", "summary": "x"}\n')
    e["latin1"] = str(root / "latin1.jsonl")
    e["no_summary"] = _write_jsonl(root / "nosum.jsonl", [{"document": "a b c", "text": "a"}])
    e["bad_split"] = _write_jsonl(
        root / "split.jsonl", [{"document": "a b", "summary": "a", "split": "holdout"}]
    )
    (root / "heads_cut").mkdir()
    for f in Path(e["diff"]).iterdir():
        if f.is_file():
            (root / "heads_cut" / f.name).write_bytes(f.read_bytes())
    cut = root / "heads_cut" / "heads.csv"
    cut.write_bytes(cut.read_bytes()[:-7])
    e["heads_cut"] = str(root / "heads_cut")
    (root / "no_config").mkdir()
    (root / "no_config" / "weights.bin").write_bytes(b"\0")
    e["no_config"] = str(root / "no_config")
    (root / "stray").mkdir()
    (root / "stray" / "notes.txt").write_text("mine\n")
    e["stray"] = str(root / "stray")
    (root / "bad.yaml").write_text("lora: [1,\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "unknown.yaml").write_text("lora:\n  epochs: 1\nnosuch: 1\n")
    (root / "bad.json").write_text('{"n": ')
    e.update({k: str(root / f"{k}.yaml") for k in ("bad", "list", "unknown")})
    e["bad_json"] = str(root / "bad.json")
    e.update(_study_inputs(root, request))
    return e


KEEP = "keep:"  # expected-prefix marker: "keep:NAME|message" — NAME's files must not change

CASES = [
    # -- finetune -----------------------------------------------------------------------------
    ("ft-duplicate-layers", "finetune --model {llama} --data {data} --layers 2,2 --out {out}",
     "--layers names 2 more than once"),
    ("ft-duplicate-heads", "finetune --model {llama} --data {data} --heads 1.0,1.0 --out {out}",
     "--heads names 1.0 more than once"),
    ("ft-lora-dropout", "finetune --model {llama} --data {data} --lora-dropout 1.5 --out {out}",
     "--lora-dropout must lie in [0, 1), got 1.5"),
    ("ft-negative-lr", "finetune --model {llama} --data {data} --lr -1 --out {out}",
     "--lr must be positive"),
    ("ft-bad-targets", "finetune --model {llama} --data {data} --targets q,z --out {out}",
     "--targets q,z is invalid"),
    ("ft-layers-and-heads",
     "finetune --model {llama} --data {data} --layers 1 --heads 1.0 --out {out}",
     "at most one of --layers, --heads and --circuit"),
    ("ft-full-with-layers", "finetune --model {llama} --data {data} --method full --layers 1 "
     "--out {out}", "use --method lora"),
    ("ft-layer-out-of-range", "finetune --model {llama} --data {data} " + TRAIN +
     " --layers 7 --out {out}", "layer 7"),
    ("ft-diverging-lr", "finetune --model {llama} --data {data} " + TRAIN +
     " --lr 1e9 --precision fp32 --out {out}", "exploded"),
    ("ft-unknown-model", "finetune --model no-such-model --data {data} --out {out}",
     "unknown model 'no-such-model'"),
    ("ft-lora-dir-as-model", "finetune --model {lora} --data {data} --method full --out {out}",
     "{lora}' holds a LoRA adapter"),
    ("ft-missing-data", "finetune --model {llama} --data {out}.jsonl --out {out}",
     "{out}.jsonl does not exist"),
    ("ft-non-utf8-data", "finetune --model {llama} --data {latin1} --out {out}",
     "not valid UTF-8"),
    ("ft-empty-data", "finetune --model {llama} --data {empty_data} --out {out}",
     "empty.jsonl holds no document/summary pair"),
    ("ft-missing-field", "finetune --model {llama} --data {no_summary} --out {out}",
     "has no field 'summary'"),
    ("ft-bad-split-label", "finetune --model {llama} --data {bad_split} --out {out}",
     "has split 'holdout'"),
    ("ft-truncated-circuit", "finetune --model {llama} --data {data} " + TRAIN +
     " --circuit {truncated_circuit} --out {out}", "truncated.json' is damaged"),
    ("ft-missing-circuit", "finetune --model {llama} --data {data} " + TRAIN +
     " --circuit {out}.json --out {out}", "{out}.json' does not exist"),
    ("ft-empty-circuit", "finetune --model {llama} --data {data} " + TRAIN +
     " --circuit {empty_circuit} --out {out}", "empty.json' is empty"),
    ("ft-different-run-in-out", "finetune --model {llama} --data {data} " + TRAIN +
     " --rank 4 --out {lora}", KEEP + "lora|{lora} holds a different run"),
    ("ft-stray-out", "finetune --model {llama} --data {data} " + TRAIN + " --out {stray}",
     KEEP + "stray|{stray} is not empty and holds no sumcircuit run"),
    # -- diff ---------------------------------------------------------------------------------
    ("diff-lora-as-finetuned", "diff --base {llama} --finetuned {lora} --data {data} --out {out}",
     "{lora}' holds a LoRA adapter"),
    ("diff-other-architecture", "diff --base {llama} --finetuned {gpt2} --data {data} "
     + QUICK + " --out {out}", "different architectures"),
    ("diff-wrong-split", "diff --base {llama} --finetuned {ft} --data {data} --split tset "
     + QUICK + " --out {out}", "no split 'tset'"),
    ("diff-missing-model", "diff --base {llama} --finetuned {out}/model --data {data} --out {out}",
     "{out}/model' does not exist"),
    ("diff-dir-without-config", "diff --base {llama} --finetuned {no_config} --data {data} "
     "--out {out}", "{no_config}' holds no config.json"),
    ("diff-batch-size-zero", "diff --base {llama} --finetuned {ft} --batch-size 0 --out {out}",
     "--batch-size must be at least 1"),
    # -- locate -------------------------------------------------------------------------------
    ("locate-every-layer", "locate --diff {diff} --k 99 --out {out}.json",
     "selected every one of the 3 layers"),
    ("locate-all-zero-scores", "locate --diff {zero_diff} --out {out}.json",
     "every kl score in '{zero_diff}' is 0"),
    ("locate-missing-diff", "locate --diff {out}-diff --out {out}.json",
     "{out}-diff/diff.json' does not exist"),
    ("locate-damaged-table", "locate --diff {heads_cut} --level head --out {out}.json",
     "heads.csv' is damaged"),
    ("locate-fdr-without-p", "locate --diff {diff} --rule fdr --out {out}.json",
     "--rule fdr needs p-values"),
    ("locate-exact-without-source", "locate --diff {diff} --score exact --out {out}.json",
     "--score exact reads a exact result: pass --sources exact=DIR"),
    ("locate-unknown-locator", "locate --diff {diff} --score best --out {out}.json",
     "unknown locator 'best'; valid: kl, js"),
    ("locate-baseline-zscore", "locate --diff {diff} --score last-k --rule zscore --out {out}.json",
     "--rule zscore does not apply to last-k"),
    # -- validate -----------------------------------------------------------------------------
    ("validate-empty-circuit", "validate --base {llama} --finetuned {ft} --data {data} "
     "--circuit {empty_circuit} --controls 0 --out {out}", "empty.json' is empty"),
    ("validate-truncated-circuit", "validate --base {llama} --finetuned {ft} --data {data} "
     "--circuit {truncated_circuit} --out {out}", "truncated.json' is damaged"),
    ("validate-too-many-controls", "validate --base {llama} --finetuned {ft} --data {data} "
     + QUICK + " --circuit {circuit} --controls 99 --out {out}", "--controls 99"),
    ("validate-identical-models", "validate --base {llama} --finetuned {llama} --data {data} "
     + QUICK + " --circuit {circuit} --out {out}", "identical weights"),
    ("validate-circuit-of-other-model", "validate --base {llama} --finetuned {ft} --data {data} "
     + QUICK + " --circuit {other_circuit} --out {out}", "the circuit was made for model 'gpt2'"),
    ("validate-negative-controls", "validate --base {llama} --finetuned {ft} --circuit {circuit} "
     "--controls -1 --out {out}", "--controls must be at least 0"),
    # -- faithfulness ---------------------------------------------------------------------------
    ("faith-diff-of-other-pair", "faithfulness --base {llama} --finetuned {ft} --data {data} "
     + QUICK + " --diff {zero_diff} --out {out}",
     "the kl ranking in '{zero_diff}' was computed with finetuned model '{llama}'"),
    ("faith-min-delta-nan", "faithfulness --base {llama} --finetuned {ft} --diff {diff} "
     "--min-delta nan --out {out}", "--min-delta must be a finite number, got 'nan'"),
    # -- export-peft ----------------------------------------------------------------------------
    ("export-peft-into-adapter", "export-peft {circuit} --out {lora}",
     "keep:lora|--out '{lora}' already holds a LoRA adapter (README.md, adapter_config.json"),
    ("export-peft-alpha-nan", "export-peft {circuit} --out {out} --alpha nan",
     "--alpha must be a finite number, got 'nan'"),
    # -- exact (and its old name, scan) ----------------------------------------------------
    ("exact-other-architecture", "exact --base {llama} --finetuned {gpt2} --data {data} " + QUICK
     + " --out {out}", "different architectures"),
    ("scan-old-name-missing-data", "scan --base {llama} --finetuned {ft} --data {out}.csv --out {out}",
     "{out}.csv does not exist"),
    # -- evaluate -----------------------------------------------------------------------------
    ("evaluate-damaged-adapter", "evaluate --model {llama} --adapter {damaged_adapter} --data "
     "{data} --split test --limit 2 --out {out}/e.json",
     "adapter_model.safetensors' is damaged"),
    ("evaluate-adapter-of-other-base", "evaluate --model {gpt2} --adapter {lora} --data {data} "
     "--split test --limit 2 --out {out}/e.json", "was trained on base model"),
    ("evaluate-not-an-adapter", "evaluate --model {llama} --adapter {ft} --data {data} "
     "--split test --limit 2 --out {out}/e.json", "{ft}' holds no LoRA adapter"),
    ("evaluate-wrong-split", "evaluate --model {llama} --data {data} --split tset --limit 2 "
     "--out {out}/e.json", "no split 'tset'"),
    # -- compare, plot ------------------------------------------------------------------------
    ("compare-missing", "compare {out}-a.json {out}-b.json --out {out}/c.json",
     "{out}-a.json' does not exist"),
    ("compare-damaged", "compare {bad_json} {bad_json} --out {out}/c.json",
     "bad.json' is damaged"),
    ("plot-missing-diff", "plot --diff {out}-diff --out {out}", "{out}-diff/diff.json' does not"),
    # -- data, models -------------------------------------------------------------------------
    ("data-show-empty", "data show {empty_data}", "empty.jsonl holds no document/summary pair"),
    ("data-show-non-utf8", "data show {latin1}", "latin1.jsonl line 1 is not valid UTF-8"),
    ("data-show-missing", "data show {out}.jsonl", "{out}.jsonl does not exist"),
    ("data-fetch-unknown", "data fetch no-such-data", "unknown dataset 'no-such-data'"),
    ("models-info-unknown", "models info no-such-model", "known presets: smollm2-135m"),
    ("models-info-dir-without-config", "models info {no_config}", "holds no config.json"),
    # -- run ----------------------------------------------------------------------------------
    ("run-unknown-model", "run --model no-such-model --out {out}", "unknown model 'no-such-model'"),
    ("run-set-bad-value", "run --set lora.epochs=abc --out {out}",
     "lora.epochs must be an integer, got 'abc'"),
    ("run-set-unknown-section", "run --set nosuch.key=1 --out {out}", "['nosuch']"),
    ("run-set-unknown-key", "run --set lora.nokey=1 --out {out}", "nokey"),
    ("run-set-malformed", "run --set lora.epochs --out {out}", "'lora.epochs' must look like"),
    ("run-set-unknown-arm", "run --set lora.arms=bogus --out {out}", "unknown LoRA arm(s) ['bogus']"),
    ("run-set-bad-dropout", "run --set finetune.lora_dropout=1.5 --out {out}",
     "finetune.lora_dropout must lie in [0, 1)"),
    ("run-config-bad-yaml", "run --config {bad} --out {out}", "bad.yaml' is not valid YAML"),
    ("run-config-not-a-mapping", "run --config {list} --out {out}", "list.yaml' must be a mapping"),
    ("run-config-unknown-key", "run --config {unknown} --out {out}", "unknown key(s) ['nosuch']"),
    ("run-config-missing", "run --config {out}.yaml --out {out}", "{out}.yaml' does not exist"),
    ("run-bad-seeds", "run --seeds a,b --out {out}", "seeds must be a comma-separated list"),
    # -- run: bounds, checked before the first stage --------------------------------------------
    ("run-set-sizes-zero", "run --set faithfulness.sizes=[0] --out {out}",
     "faithfulness.sizes must be at least 1, got 0"),
    ("run-set-huge-n-boot", "run --set diff.n_boot=1000000000000 --out {out}",
     "diff.n_boot must be at most 100,000, got 1e+12: bootstrap intervals settle"),
    ("run-set-huge-epochs", "run --set lora.epochs=1.0e+29 --out {out}",
     "lora.epochs must be at most 100, got 1e+29: a pretrained model fine-tunes in a few epochs"),
    ("run-set-huge-controls", "run --set validate.controls=5000 --out {out}",
     "validate.controls must be at most 1,000, got 5000"),
    ("run-set-many-draws", "run --set lora.random_draws=1000 --out {out}",
     "lora.random_draws must be at most 100, got 1000"),
    ("run-duplicate-seeds", "run --seeds 0,0 --out {out}", "seeds names 0 more than once"),
    ("run-seed-beyond-32-bits", "run --seeds 0,4294967296 --out {out}",
     "seeds must be at most 4,294,967,295, got 0,4294967296: numpy's and CUDA's generators"),
    ("run-control-size-not-a-size", "run --set faithfulness.sizes=[1,2] "
     "--set faithfulness.control_sizes=[3] --out {out}",
     "faithfulness.control_sizes holds 3, which is not among faithfulness.sizes [1, 2]"),
    ("run-levels-disagree", "run --set locate.level=head --out {out}",
     "locate.level=head differs from faithfulness.level=layer"),
    # -- run: what the model and the data bound, before study.json is written ---------------------
    ("run-draws-beyond-distinct-sets", RUN_OK + " --set lora.random_draws=5 --out {out}",
     "lora.random_draws=5 asks for more random layer sets than exist: a 1-layer circuit leaves 2 "
     "distinct sets among the other 2 layers"),
    ("run-draws-any-circuit-size", RUN_OK + " --set locate.rule=zscore --set lora.random_draws=3 "
     "--out {out}", "a circuit of any size leaves at most 2 distinct sets"),
    ("run-quick-sizes-beyond-model", "run --model {llama} --data {data} --out {out}",
     "faithfulness.sizes holds 8, beyond the 3 layers of model '{llama}'; use sizes up to 3"),
    ("run-k-whole-model", RUN_OK + " --set locate.k=3 --out {out}",
     "locate.k=3 would select every one of the 3 layers"),
    ("run-controls-beyond-sets", RUN_OK + " --set validate.controls=20 --out {out}",
     "validate.controls=20 asks for more random sets than exist"),
    ("run-heads-per-layer-beyond-model", RUN_OK + " --set lora.arms=[standard,heads] "
     "--set lora.heads_per_layer=5 --out {out}",
     "lora.heads_per_layer=5 exceeds the 4 heads per layer"),
    ("run-max-length-beyond-model", RUN_OK + " --max-length 100000 --out {out}",
     "--max-length=100000 exceeds the 512 positions model '{llama}' attends over"),
    ("run-mistyped-data-path", RUN_OK + " --data {out}.jsonl --out {out}",
     "{out}.jsonl does not exist"),
    ("run-unknown-data-name", RUN_OK + " --data xsumm --out {out}", "unknown dataset 'xsumm'"),
    ("run-data-without-split", RUN_OK + " --set diff.split=tset --out {out}",
     "diff.split: dataset 'xsum_sample.jsonl' has no split 'tset'"),
    # -- run: config files and --set values read strictly ---------------------------------------
    ("run-config-duplicate-key", "run --config {dup} --out {out}",
     "dup.yaml' is not valid YAML at line 3, column 3: key 'epochs' appears more than once"),
    ("run-config-alias-bomb", "run --config {bomb} --out {out}",
     "bomb.yaml' is not valid YAML: its aliases expand to more than 100,000 values"),
    ("run-config-many-aliases", "run --config {aliases} --out {out}",
     "aliases.yaml' is not valid YAML at line 2, column 415: it uses more than 100 aliases"),
    ("run-config-binary", "run --config {binary} --out {out}",
     "binary.yaml' is not UTF-8 text (byte 1 is not)"),
    ("run-config-deeply-nested", "run --config {deep} --out {out}",
     "deep.yaml' is nested too deeply to be a study config"),
    ("run-config-directory", "run --config {stray} --out {out}",
     "config file '{stray}' is not a file"),
    ("run-set-malformed-yaml", "run --set lora.arms=[1, --out {out}",
     "the value of --set 'lora.arms=[1,' is not valid YAML"),
    # -- run: the run directory -----------------------------------------------------------------
    ("run-study-json-a-list", RUN_OK + " --out {list_study}",
     KEEP + "list_study|study.json' is damaged (not a JSON object naming the study's model"),
    ("run-study-json-invalid", RUN_OK + " --out {invalid_study}",
     KEEP + "invalid_study|study.json' is damaged"),
    ("run-directory-in-use", RUN_OK + " --out {locked}",
     KEEP + "locked|'{locked}' is in use by another sumcircuit run (pid "),
    # -- bounds, circuits and nesting in the other commands -------------------------------------
    ("ft-huge-epochs", "finetune --model {llama} --data {data} --epochs 1000 --out {out}",
     "--epochs must be at most 100, got 1000"),
    ("ft-circuit-float-layer", "finetune --model {llama} --data {data} " + TRAIN +
     " --circuit {float_circuit} --out {out}",
     "float_circuit.json' is damaged (circuit layer 1.7 is not a layer number"),
    ("ft-circuit-bool-layer", "finetune --model {llama} --data {data} " + TRAIN +
     " --circuit {bool_circuit} --out {out}",
     "bool_circuit.json' is damaged (circuit layer True is not a layer number"),
    ("validate-circuit-float-layer", "validate --base {llama} --finetuned {ft} --data {data} "
     "--circuit {float_circuit} --out {out}", "float_circuit.json' is damaged"),
    ("diff-huge-n-boot", "diff --base {llama} --finetuned {ft} --n-boot 1000000 --out {out}",
     "--n-boot must be at most 100,000, got 1000000"),
    ("attribute-huge-ig-steps", "attribute --base {llama} --finetuned {ft} --ig-steps 100000 "
     "--out {out}", "--ig-steps must be at most 256, got 100000"),
    ("evaluate-max-length-beyond-model", "evaluate --model {llama} --data {data} --max-length "
     "100000 --out {out}/e.json",
     "--max-length=100000 exceeds the 512 positions model '{llama}' attends over; use at most 512"),
    ("evaluate-many-beams", "evaluate --model {llama} --data {data} --num-beams 1000 "
     "--out {out}/e.json", "--num-beams must be at most 64, got 1000"),
    ("data-show-deeply-nested-json", "data show {deep_json}",
     "deep.json nests JSON arrays or objects too deeply to read"),
    ("data-show-deeply-nested-jsonl", "data show {deep_jsonl}",
     "deep.jsonl line 1 nests JSON arrays or objects too deeply to read"),
]  # fmt: skip


def _snapshot(directory: str) -> dict[str, str]:
    root = Path(directory)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _messages(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and ONE_LINE_TAIL not in line]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(
    env, tmp_path, capsys, monkeypatch, argv, expected
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # unknown names must fail at once, offline
    paths = dict(env, out=str(tmp_path / "out"))
    keep = None
    if expected.startswith(KEEP):
        keep, expected = expected[len(KEEP) :].split("|", 1)
    before = _snapshot(env[keep]) if keep else None
    capsys.readouterr()
    code = main(argv.format(**paths).split())
    err = capsys.readouterr().err
    lines = _messages(err)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(**paths) in lines[0]
    assert not (tmp_path / "out").exists(), "a refused command wrote its --out"
    if keep:
        assert _snapshot(env[keep]) == before, f"{keep} changed"


def test_table_covers_every_command():
    commands = {c[1].split()[0] for c in CASES}
    assert commands >= {"finetune", "diff", "locate", "validate", "exact", "evaluate", "compare",
                        "plot", "data", "models", "run"}  # fmt: skip
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


def test_a_finished_run_records_what_ran_and_shares_its_weights(env):
    """training.json says which precision ran (not ``auto``) and the validation loss before
    the first step; weights are 0644 like every other result file."""
    record = json.loads((Path(env["lora"]) / "training.json").read_text())
    assert record["config"]["precision"] == "auto"
    assert record["precision_used"] in ("bf16", "fp32")
    assert record["val_loss_start"] > 0 and record["resumed_at_step"] == 0
    assert record["process_wall_s"] == pytest.approx(record["wall_s"], rel=0.5)
    for path in Path(env["lora"]).iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_a_rising_validation_loss_stops_and_keeps_the_last_good_checkpoint(
    env, tmp_path, capsys, monkeypatch
):
    from sumcircuit.training import divergence
    from sumcircuit.training.checkpoint import checkpoint_info

    monkeypatch.setattr(divergence, "VAL_RISE", 0.5)  # any validation loss now counts as "risen"
    out = tmp_path / "run"
    argv = f"finetune --model {env['llama']} --data {env['data']} {TRAIN} --checkpoint-every 1"
    assert main([*argv.split(), "--out", str(out)]) == 2
    (line,) = _messages(capsys.readouterr().err)
    assert line.startswith("error: the validation loss rose to ")
    assert "the last good checkpoint (step 1) is kept" in line and "lower --lr" in line
    assert checkpoint_info(out)["step"] == 1  # the epoch-end state was not checkpointed
