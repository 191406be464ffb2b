"""``sumcircuit evaluate`` and ``sumcircuit compare`` end to end on a tiny saved model (ROUGE and
the reference log-likelihood)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvalResult, EvaluateConfig, read_predictions
from sumcircuit.evaluation.rouge import METRICS

N_TEST = 5


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [
        {
            "id": f"{split}{i}",
            "document": f"Document {i} of {split}: the council met on day {i} to vote on the plan.",
            "summary": f"The council voted on day {i}.",
            "split": split,
        }
        for split, n in (("train", 3), ("test", N_TEST))
        for i in range(n)
    ]
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _evaluate(model_dir: Path, data: Path, out: Path, *extra: str) -> int:
    argv = ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "test"]
    argv += ["--out", str(out), "--max-new-tokens", "6", "--max-length", "64", "--batch-size", "2"]
    return main([*argv, *extra])


@pytest.fixture(scope="module")
def results(tiny_dirs, data_file, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    a, b = root / "a.json", root / "b.json"
    assert _evaluate(tiny_dirs["llama"], data_file, a) == 0
    assert _evaluate(tiny_dirs["gemma3"], data_file, b, "--num-beams", "2") == 0
    return a, b


def test_evaluate_writes_result_json_and_predictions(results, data_file) -> None:
    path, _ = results
    data = json.loads(path.read_text())
    for metric in METRICS:
        assert set(data[metric]) == {"f", "ci95"}
        lo, hi = data[metric]["ci95"]
        assert 0.0 <= lo <= data[metric]["f"] <= hi <= 1.0
    assert data["n"] == N_TEST
    assert data["generation"]["max_new_tokens"] == 6
    assert data["generation"]["decoding"] == "greedy"
    assert data["wall_s"] > 0
    assert data["provenance"]["models"]["evaluated"]["sha256"]
    assert data["provenance"]["data"]["split"] == "test"
    assert data["predictions"] == "a.predictions.jsonl"

    lines = path.with_suffix(".predictions.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == [f"test{i}" for i in range(N_TEST)]  # input order
    assert set(rows[0]) == {
        "id",
        "document",
        "reference",
        "prediction",
        *METRICS,
        "loglik",
        "loops",
    }
    assert rows[2]["reference"] == "The council voted on day 2."
    mean = sum(r["rougeL"] for r in rows) / N_TEST
    assert data["rougeL"]["f"] == pytest.approx(mean)
    logliks = [r["loglik"] for r in rows]
    assert all(x < 0 for x in logliks)
    assert data["loglik"]["mean"] == pytest.approx(sum(logliks) / N_TEST)
    lo, hi = data["loglik"]["ci95"]
    assert lo <= data["loglik"]["mean"] <= hi and data["loglik"]["n_tokens"] > N_TEST

    assert all(isinstance(r["loops"], bool) for r in rows)
    loops = data["loop_rate"]
    assert loops["n_loops"] == sum(r["loops"] for r in rows)
    assert loops["rate"] == pytest.approx(loops["n_loops"] / N_TEST)
    assert loops["ci95"][0] <= loops["rate"] <= loops["ci95"][1] and loops["ngram"] == 3

    loaded = EvalResult.load(path)
    assert loaded.n == N_TEST
    assert loaded.to_frame()["metric"].tolist() == [*METRICS, "loop_rate", "loglik"]
    assert loaded.loglik == data["loglik"] and loaded.loop_rate == loops
    assert loaded.predictions["loops"].tolist() == [float(r["loops"]) for r in rows]


def test_decoding_options_are_recorded_and_change_the_summaries(
    tiny_dirs, data_file, tmp_path, capsys
) -> None:
    """The defaults decode as before; the options reach generation and the result records them."""
    plain = tmp_path / "plain.json"
    assert _evaluate(tiny_dirs["gpt2"], data_file, plain) == 0
    assert "loop rate" in capsys.readouterr().out
    tuned = tmp_path / "tuned.json"
    options = ("--no-repeat-ngram-size", "1", "--repetition-penalty", "1.3")
    assert _evaluate(tiny_dirs["gpt2"], data_file, tuned, *options) == 0
    a, b = EvalResult.load(plain), EvalResult.load(tuned)
    assert a.generation["no_repeat_ngram_size"] == 0 and a.generation["repetition_penalty"] == 1.0
    assert a.generation["decoding"] == "greedy"
    assert b.generation["no_repeat_ngram_size"] == 1 and b.generation["repetition_penalty"] == 1.3
    assert b.generation["decoding"] == "greedy, no repeated 1-gram, repetition penalty 1.3"
    assert b.provenance["config"]["repetition_penalty"] == 1.3
    assert b.loop_rate["rate"] == 0.0  # no token twice: no word 3-gram twice either
    # the options act on generation alone: the reference log-likelihood is the same
    assert b.predictions["loglik"].tolist() == a.predictions["loglik"].tolist()


def _strip_loglik(path: Path, out: Path) -> Path:
    """A copy of the result at ``path`` as written before loglik and the loop rate existed."""
    data = json.loads(path.read_text())
    del data["loglik"], data["loop_rate"]
    data["predictions"] = out.with_suffix(".predictions.jsonl").name
    out.write_text(json.dumps(data))
    rows = [json.loads(x) for x in path.with_suffix(".predictions.jsonl").read_text().splitlines()]
    new = ("loglik", "loops")
    out.with_suffix(".predictions.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k not in new}) + "\n" for r in rows)
    )
    return out


def test_results_without_loglik_still_load_and_compare(results, tmp_path, capsys) -> None:
    a, b = results
    old = EvalResult.load(_strip_loglik(a, tmp_path / "old.json"))
    assert old.loglik is None and old.predictions["loglik"].isna().all()
    assert old.loop_rate is None and old.to_frame()["metric"].tolist() == list(METRICS)
    # the per-example loop flags follow from the predictions
    assert old.predictions["loops"].tolist() == EvalResult.load(a).predictions["loops"].tolist()
    assert main(["compare", str(tmp_path / "old.json"), str(b)]) == 0
    assert "loglik     not in both results" in capsys.readouterr().out
    old.save(tmp_path / "again.json")  # saves back with loglik null
    assert json.loads((tmp_path / "again.json").read_text())["loglik"] is None
    again = [
        json.loads(x) for x in (tmp_path / "again.predictions.jsonl").read_text().split("\n")[:-1]
    ]
    assert all(r["loglik"] is None for r in again)
    assert EvalResult.load(tmp_path / "again.json").loglik is None


def test_no_loglik_flag_skips_it(tiny_dirs, data_file, tmp_path) -> None:
    out = tmp_path / "c.json"
    assert _evaluate(tiny_dirs["gpt2"], data_file, out, "--no-loglik", "--limit", "2") == 0
    assert json.loads(out.read_text())["loglik"] is None
    assert EvalResult.load(out).predictions["loglik"].isna().all()


def test_a_result_missing_some_logliks_is_damaged(results, tmp_path) -> None:
    a, _ = results
    rows = [json.loads(x) for x in a.with_suffix(".predictions.jsonl").read_text().splitlines()]
    rows[1]["loglik"] = None
    broken = tmp_path / "broken.json"
    broken.write_text(a.read_text().replace("a.predictions.jsonl", "broken.predictions.jsonl"))
    broken.with_suffix(".predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SumcircuitError, match="lack the loglik score"):
        EvalResult.load(broken)


def test_compare_two_results(results, tmp_path, capsys) -> None:
    a, b = results
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "rougeLsum" in table and "95% CI" in table
    data = json.loads(out.read_text())
    pa, pb = read_predictions(a), read_predictions(b)
    assert data["n"] == N_TEST
    for metric in (*METRICS, "loglik"):
        diff = data[metric]["mean_diff"]
        assert diff == pytest.approx(pa[metric].mean() - pb[metric].mean())
        assert data[metric]["a"] == pytest.approx(pa[metric].mean())
        assert 0.0 <= data[metric]["p_value"] <= 1.0
    assert "loglik" in table


def test_compare_aligns_by_id(results, tmp_path) -> None:
    a, _ = results
    rows = [json.loads(x) for x in a.with_suffix(".predictions.jsonl").read_text().splitlines()]
    shuffled = tmp_path / "shuffled.json"
    shuffled.write_text(a.read_text().replace("a.predictions.jsonl", "shuffled.predictions.jsonl"))
    shuffled.with_suffix(".predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in reversed(rows))
    )
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(shuffled), "--out", str(out)]) == 0
    assert all(json.loads(out.read_text())[m]["mean_diff"] == 0.0 for m in (*METRICS, "loglik"))


def test_compare_refuses_different_examples(results, tmp_path, capsys) -> None:
    a, _ = results
    rows = [json.loads(x) for x in a.with_suffix(".predictions.jsonl").read_text().splitlines()]
    rows[0]["id"] = "other"
    fewer = tmp_path / "other.json"
    fewer.write_text(a.read_text().replace("a.predictions.jsonl", "other.predictions.jsonl"))
    fewer.with_suffix(".predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["compare", str(a), str(fewer)]) == 2
    err = capsys.readouterr().err
    assert "cover different examples" in err and "'other'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_give_one_clear_sentence(tiny_dirs, data_file, tmp_path, capsys) -> None:
    cases = [
        (["compare", str(tmp_path / "missing.json"), str(tmp_path / "b.json")], "does not exist"),
        (
            ["evaluate", "--model", str(tiny_dirs["gpt2"]), "--data", str(data_file)]
            + ["--split", "validation", "--out", str(tmp_path / "x.json")],
            "has no split 'validation'",
        ),
        (
            ["evaluate", "--model", str(tiny_dirs["gpt2"]), "--data", str(tmp_path / "no.jsonl")]
            + ["--out", str(tmp_path / "x.json")],
            "does not exist",
        ),
        (
            ["evaluate", "--model", str(tiny_dirs["gpt2"]), "--data", str(data_file)]
            + ["--max-new-tokens", "0", "--out", str(tmp_path / "x.json")],
            "--max-new-tokens must be at least 1",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()  # may start with a loading bar
        assert message in err[-1] and err[-1].startswith("error: ")
        assert sum(line.startswith("error") for line in err) == 1
        assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "x.json").exists()


def test_config_round_trip_and_validation() -> None:
    config = EvaluateConfig(model="m", limit=3, num_beams=2)
    assert EvaluateConfig.from_dict(config.to_dict()) == config
    assert config.generation()["decoding"] == "beam search (2 beams)"
    with pytest.raises(Exception, match="must be below --max-length"):
        EvaluateConfig(max_new_tokens=64, max_length=64)
    with pytest.raises(Exception, match="repetition-penalty must be above 0"):
        EvaluateConfig(repetition_penalty=0.0)
    with pytest.raises(Exception, match="no-repeat-ngram-size must be at least 0"):
        EvaluateConfig(no_repeat_ngram_size=-1)
