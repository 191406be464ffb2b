"""Training benchmarks; by default the real smollm2-135m (30 layers), XSum train, batch 4,
max_length 512, on the CPU.

    python benchmarks/train_bench.py precision   # bf16 autocast vs fp32: loss/grad agreement
    python benchmarks/train_bench.py step        # targeted LoRA (2,3,5 and 15,21,22) vs all 30
    python benchmarks/train_bench.py trainer     # this engine vs transformers.Trainer + peft
    python benchmarks/train_bench.py copies      # validation: bf16 weight copies vs casts

Each mode prints its measurements and ratios, all measured in one process. ``--model``,
``--data``, ``--device``, ``--batch-size``, ``--max-length`` and ``--targeted 2,3,5`` (repeat it;
the targeted arms of ``step``) run the same measurements elsewhere (``benchmarks/gpu_smoke.sh``:
a GPU, or a tiny model on the CPU). ``step`` also prints each arm's GFLOP/s, its FLOPs counted by
``benchmarks/roofline.py`` (forward + backward down to the lowest adapted layer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from unittest import mock

import torch
from roofline import ModelDims, train_step_flops

from sumcircuit.data.batching import prepare
from sumcircuit.data.prompting import IGNORE_INDEX, collate
from sumcircuit.distributed import Processes
from sumcircuit.models.loader import load_model
from sumcircuit.training import validation
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loop import train_step
from sumcircuit.training.loss import body_and_head, summary_ce_sum
from sumcircuit.training.order import epoch_batches
from sumcircuit.training.precision import autocast, bf16_weights
from sumcircuit.training.select import select_adapters
from sumcircuit.training.validation import Validator


@dataclass(frozen=True)
class Bench:
    """What every mode runs on."""

    model: str = "smollm2-135m"
    data: str = "xsum"
    batch: int = 4
    max_length: int = 512
    device: torch.device = torch.device("cpu")

    @property
    def procs(self) -> Processes:
        return Processes(0, 1, self.device)


def _setup(bench: Bench, layers: list[int] | None, precision: str = "auto", n: int = 32):
    config = FinetuneConfig(
        model=bench.model,
        out="-",
        layers=layers,
        batch_size=bench.batch,
        max_length=bench.max_length,
        precision=precision,
    )
    loaded = load_model(bench.model, device=bench.device)
    train = prepare(bench.data, "train", loaded.tokenizer, limit=n, max_length=bench.max_length)
    adapted = select_adapters(config, loaded)
    adapted.model.train()
    params = [p for p in adapted.model.parameters() if p.requires_grad]
    return config, loaded, train, adapted.model, params


def _batches(bench: Bench, train, n_steps: int) -> list[list[int]]:
    lengths = [len(e.input_ids) for e in train.encoded]
    return epoch_batches(lengths, bench.batch, seed=0, epoch=0)[:n_steps]


def precision(bench: Bench, n_batches: int, targeted: list[list[int]]) -> None:
    """Loss and gradient of the same batches at the same weights, fp32 vs bf16 autocast."""
    config, loaded, train, model, params = _setup(bench, None)
    body, head, cap = body_and_head(model)
    pad = loaded.tokenizer.pad_token_id
    for batch in _batches(bench, train, n_batches):
        data = collate([train.encoded[i] for i in batch], pad).to(bench.device)
        out = {}
        for prec in ("fp32", "bf16"):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with autocast(FinetuneConfig(out="-", precision=prec), bench.device):
                ce, n = summary_ce_sum(body, head, data, cap)
            (ce / n).backward()
            grad = torch.cat([p.grad.reshape(-1) for p in params])
            out[prec] = (float(ce) / n, grad.clone(), time.perf_counter() - t0)
        (l32, g32, t32), (l16, g16, t16) = out["fp32"], out["bf16"]
        cos = torch.nn.functional.cosine_similarity(g32, g16, dim=0).item()
        rel = ((g16 - g32).norm() / g32.norm()).item()
        print(
            f"loss fp32 {l32:.5f} bf16 {l16:.5f} |diff| {abs(l16 - l32):.5f}  grad cosine "
            f"{cos:.5f} rel-norm-diff {rel:.4f}  time fp32 {t32:.2f}s bf16 {t16:.2f}s "
            f"({t32 / t16:.2f}x)"
        )


TARGETED = [[2, 3, 5], [15, 21, 22]]  # the paper's layers; the circuit located on smollm2-135m


def step(bench: Bench, n_steps: int, targeted: list[list[int]]) -> None:
    """Median step time and GFLOP/s of each arm; arms alternate step by step on the same
    batches, so a change in machine load hits them alike."""
    layer_sets = {f"targeted {','.join(map(str, t))}": t for t in targeted} | {"standard": None}
    arms = {name: _setup(bench, layers) for name, layers in layer_sets.items()}
    opts = {name: torch.optim.AdamW(a[4], lr=a[0].lr) for name, a in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    flops: dict[str, list[float]] = {name: [] for name in arms}
    train = arms["standard"][2]
    dims = ModelDims.from_config(arms["standard"][1].model.config)
    for batch in _batches(bench, train, n_steps + 1):
        width = max(len(train.encoded[i].input_ids) for i in batch)
        rows = sum(train.encoded[i].n_summary_tokens for i in batch)
        for name, (config, loaded, _, model, params) in arms.items():
            t0 = time.perf_counter()
            train_step(
                model, params, train, batch, config, bench.procs, loaded.tokenizer.pad_token_id
            )
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            if bench.device.type == "cuda":
                torch.cuda.synchronize(bench.device)
            times[name].append(time.perf_counter() - t0)
            lowest = min(layer_sets[name]) if layer_sets[name] else 0
            adapter = sum(p.numel() for p in params)
            flops[name].append(
                train_step_flops(
                    dims,
                    [width] * len(batch),
                    rows,
                    full=False,
                    lowest_layer=lowest,
                    adapter_params=adapter,
                )
            )
    median = {name: statistics.median(t[1:]) for name, t in times.items()}  # step 0 warms up
    for name, m in median.items():
        rate = sum(flops[name][1:]) / sum(times[name][1:]) / 1e9
        print(
            f"median step {name}: {m:.3f}s, ratio to standard {m / median['standard']:.3f}, "
            f"{rate:.1f} GFLOP/s"
        )
    print("target: targeted / standard <= 0.7")


def _engine_tokens_per_s(bench: Bench, precision_: str, n_steps: int) -> float:
    config, loaded, train, model, params = _setup(
        bench, None, precision_, n=bench.batch * (n_steps + 1)
    )
    opt = torch.optim.AdamW(params, lr=config.lr)
    batches = _batches(bench, train, n_steps + 1)
    tokens, seconds = 0, 0.0
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        _, _, n_tok = train_step(
            model, params, train, batch, config, bench.procs, loaded.tokenizer.pad_token_id
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k:  # first step warms up
            tokens, seconds = tokens + n_tok, seconds + time.perf_counter() - t0
    return tokens / seconds


def _trainer_tokens_per_s(bench: Bench, n_steps: int) -> float:
    """A plain Trainer + peft run: full logits, loss over labels (summary tokens), fp32,
    default random sampler with padding to the longest in the batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    loaded = load_model(bench.model, device=bench.device)
    train = prepare(
        bench.data,
        "train",
        loaded.tokenizer,
        limit=bench.batch * (n_steps + 1),
        max_length=bench.max_length,
    )
    pad = loaded.tokenizer.pad_token_id
    model = get_peft_model(
        loaded.model,
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    rows = [{"enc": e} for e in train.encoded]

    def collator(features):
        b = collate([f["enc"] for f in features], pad)
        labels = torch.full_like(b.input_ids, IGNORE_INDEX)  # HF shifts labels inside the model
        labels[:, 1:] = b.labels[:, :-1]
        stats["tokens"].append(int(b.attention_mask.sum()))
        return {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "labels": labels}

    stats: dict[str, list] = {"tokens": [], "times": []}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            stats["times"].append(time.perf_counter() - self.t0)

    args = TrainingArguments(
        output_dir="/tmp/train_bench_trainer",
        per_device_train_batch_size=bench.batch,
        max_steps=n_steps + 1,
        learning_rate=2e-4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        remove_unused_columns=False,
        use_cpu=bench.device.type == "cpu",
        seed=0,
        dataloader_num_workers=0,
    )
    Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Timer()]
    ).train()
    return sum(stats["tokens"][1:]) / sum(stats["times"][1:])


def trainer(bench: Bench, n_steps: int, targeted: list[list[int]]) -> None:
    base = _trainer_tokens_per_s(bench, n_steps)
    ours = _engine_tokens_per_s(bench, "auto", n_steps)
    ours32 = _engine_tokens_per_s(bench, "fp32", n_steps)
    print(
        f"tokens/s: Trainer+peft (fp32) {base:.0f}; engine (auto precision) {ours:.0f} "
        f"({ours / base:.2f}x, target >= 1.5); engine fp32 {ours32:.0f} ({ours32 / base:.2f}x)"
    )


def _switched(on: bool):
    """``bf16_weights`` as the validator calls it, turned off when ``on`` is false."""
    return lambda model, enabled=True: bf16_weights(model, enabled and on)


def copies(bench: Bench, n_steps: int, targeted: list[list[int]]) -> None:
    """A standard LoRA run's validation ROUGE-L under bf16 autocast (8 greedy summaries of
    validation documents), with autocast casting every weight at each call vs the bf16 copies
    the validator keeps while generating (``training.precision.bf16_weights``); the two
    alternate on the same weights, ``n_steps`` rounds after one warm-up round, medians."""
    config, loaded, _, model, _ = _setup(bench, None, precision="bf16")
    config = FinetuneConfig(**{**config.to_dict(), "val_limit": 0, "rouge_every_epoch": 8})
    times: dict[str, list[float]] = {"casts": [], "copies": []}
    results: dict[str, float | None] = {}
    validator = Validator(model, None, config, bench.procs, loaded)
    for repeat in range(n_steps + 1):
        for name, enabled in (("casts", False), ("copies", True)):
            with mock.patch.object(validation, "bf16_weights", _switched(enabled)):
                start = time.perf_counter()
                results[name] = validator.rouge()
                if repeat:
                    times[name].append(time.perf_counter() - start)
    cast, copy = statistics.median(times["casts"]), statistics.median(times["copies"])
    print(f"validation ROUGE-L of a standard LoRA run, bf16 autocast, median of {n_steps}:")
    print(f"casts {cast:.2f}s  copies {copy:.2f}s  ({cast / copy:.2f}x)")
    print(f"same ROUGE-L bit for bit: {results['casts'] == results['copies']}")


def _layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--targeted {text!r}: give layers like 2,3,5") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("precision", "step", "trainer", "copies"))
    parser.add_argument("--steps", type=int, default=4, help="measured steps (after 1 warm-up)")
    parser.add_argument("--model", default=Bench.model)
    parser.add_argument("--data", default=Bench.data, help="dataset name or local file")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--batch-size", type=int, default=Bench.batch)
    parser.add_argument("--max-length", type=int, default=Bench.max_length)
    parser.add_argument(
        "--targeted", type=_layers, action="append", help="a targeted arm's layers (step mode)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    bench = Bench(
        args.model, args.data, args.batch_size, args.max_length, torch.device(args.device)
    )
    modes = {"precision": precision, "step": step, "trainer": trainer, "copies": copies}
    modes[args.mode](bench, args.steps, args.targeted or TARGETED)


if __name__ == "__main__":
    main()
