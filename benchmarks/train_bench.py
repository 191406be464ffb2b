"""Training benchmarks on the real smollm2-135m (30 layers), XSum train, batch 4, max_length 512.

    python benchmarks/train_bench.py precision   # bf16 autocast vs fp32: loss/grad agreement
    python benchmarks/train_bench.py step        # targeted LoRA (2,3,5 and 15,21,22) vs all 30
    python benchmarks/train_bench.py trainer     # this engine vs transformers.Trainer + peft

Each mode prints its measurements and ratios, all measured in one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from sumcircuit.data.batching import prepare
from sumcircuit.data.prompting import IGNORE_INDEX, collate
from sumcircuit.distributed import Processes
from sumcircuit.models.loader import load_model
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loop import train_step
from sumcircuit.training.loss import body_and_head, summary_ce_sum
from sumcircuit.training.order import epoch_batches
from sumcircuit.training.precision import autocast
from sumcircuit.training.select import select_adapters

MODEL = "smollm2-135m"
BATCH = 4
MAX_LENGTH = 512
CPU = Processes(0, 1, torch.device("cpu"))


def _setup(layers: list[int] | None, precision: str = "auto", n: int = 32):
    config = FinetuneConfig(
        model=MODEL,
        out="-",
        layers=layers,
        batch_size=BATCH,
        max_length=MAX_LENGTH,
        precision=precision,
    )
    loaded = load_model(MODEL, device="cpu")
    train = prepare("xsum", "train", loaded.tokenizer, limit=n, max_length=MAX_LENGTH)
    adapted = select_adapters(config, loaded)
    adapted.model.train()
    params = [p for p in adapted.model.parameters() if p.requires_grad]
    return config, loaded, train, adapted.model, params


def _batches(train, n_steps: int) -> list[list[int]]:
    lengths = [len(e.input_ids) for e in train.encoded]
    return epoch_batches(lengths, BATCH, seed=0, epoch=0)[:n_steps]


def precision(n_batches: int) -> None:
    """Loss and gradient of the same batches at the same weights, fp32 vs bf16 autocast."""
    config, loaded, train, model, params = _setup(None)
    body, head, cap = body_and_head(model)
    pad = loaded.tokenizer.pad_token_id
    for batch in _batches(train, n_batches):
        data = collate([train.encoded[i] for i in batch], pad)
        out = {}
        for prec in ("fp32", "bf16"):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with autocast(FinetuneConfig(out="-", precision=prec), CPU.device):
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


ARMS = {"targeted 2,3,5": [2, 3, 5], "targeted 15,21,22": [15, 21, 22], "standard": None}


def step(n_steps: int) -> None:
    """Median step time of each arm; arms alternate step by step on the same batches, so a change
    in machine load hits them alike."""
    arms = {name: _setup(layers) for name, layers in ARMS.items()}
    opts = {name: torch.optim.AdamW(a[4], lr=a[0].lr) for name, a in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    for batch in _batches(arms["standard"][2], n_steps + 1):
        for name, (config, loaded, train, model, params) in arms.items():
            t0 = time.perf_counter()
            train_step(model, params, train, batch, config, CPU, loaded.tokenizer.pad_token_id)
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(t[1:]) for name, t in times.items()}  # step 0 warms up
    for name, m in median.items():
        print(f"median step {name}: {m:.3f}s, ratio to standard {m / median['standard']:.3f}")
    print("target: targeted / standard <= 0.7")


def _engine_tokens_per_s(precision_: str, n_steps: int) -> float:
    config, loaded, train, model, params = _setup(None, precision_, n=BATCH * (n_steps + 1))
    opt = torch.optim.AdamW(params, lr=config.lr)
    batches = _batches(train, n_steps + 1)
    tokens, seconds = 0, 0.0
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        _, _, n_tok = train_step(
            model, params, train, batch, config, CPU, loaded.tokenizer.pad_token_id
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k:  # first step warms up
            tokens, seconds = tokens + n_tok, seconds + time.perf_counter() - t0
    return tokens / seconds


def _trainer_tokens_per_s(n_steps: int) -> float:
    """A plain Trainer + peft run: full logits, loss over labels (summary tokens), fp32,
    default random sampler with padding to the longest in the batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    loaded = load_model(MODEL, device="cpu")
    train = prepare(
        "xsum", "train", loaded.tokenizer, limit=BATCH * (n_steps + 1), max_length=MAX_LENGTH
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
        per_device_train_batch_size=BATCH,
        max_steps=n_steps + 1,
        learning_rate=2e-4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        remove_unused_columns=False,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Timer()]
    ).train()
    return sum(stats["tokens"][1:]) / sum(stats["times"][1:])


def trainer(n_steps: int) -> None:
    base = _trainer_tokens_per_s(n_steps)
    ours = _engine_tokens_per_s("auto", n_steps)
    ours32 = _engine_tokens_per_s("fp32", n_steps)
    print(
        f"tokens/s: Trainer+peft (fp32) {base:.0f}; engine (auto precision) {ours:.0f} "
        f"({ours / base:.2f}x, target >= 1.5); engine fp32 {ours32:.0f} ({ours32 / base:.2f}x)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("precision", "step", "trainer"))
    parser.add_argument("--steps", type=int, default=4, help="measured steps (after 1 warm-up)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    {"precision": precision, "step": step, "trainer": trainer}[args.mode](args.steps)


if __name__ == "__main__":
    main()
