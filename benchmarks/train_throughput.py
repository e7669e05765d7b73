"""Training throughput: the pretrain recipe's training step against a raw PyTorch loop, in one process.

Both train the same freshly initialized model shape on `--seq`-token rows of `--micro_batch`.
The raw loop feeds random full rows with plain causal attention (the baselines in
``BENCHMARKS.md``); the recipe runs `hf_ipt.training.build_trainer` (the `IPTTrainer` the
recipes use) on packed blocks of variable-length documents: zero padding, no attention
across documents, labels masked at document starts, exactly as `recipes/pretrain.py` trains.

    python benchmarks/train_throughput.py --shape tiny                      # CPU smoke figure
    python benchmarks/train_throughput.py --shape llama-551m --compile      # one GPU, bf16
    python benchmarks/train_throughput.py --shape llama-551m --liger --micro_batch 16 \\
        --raw_compile --raw_micro_batch 4                                   # the 45% MFU levers vs the
                                                                            # issue's raw loop (compiled, mb 4)
    python benchmarks/train_throughput.py --shape llama-551m --liger --compile_layers --micro_batch 16 \\
        --raw_compile --raw_micro_batch 4                                   # layers compiled, fused loss eager
    python benchmarks/train_throughput.py --shape llama-551m --attn hf_ipt_varlen --liger --compile_layers \\
        --micro_batch 24 32 --nan_inf_filter on off --raw_compile --raw_micro_batch 4
                                                                            # 4 recipe runs, one raw loop

Liger's fused linear cross-entropy fails under torch.compile with torch 2.11 (BENCHMARKS.md):
run the Liger recipe eager.

MFU counts 6 x N FLOPs per token (N from the config, embeddings included) against the
device's dense bf16 peak (H100/H200: 989 TFLOP/s; pass --peak_tflops elsewhere).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import random
import tempfile
import time

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from hf_ipt.training.model_init import MODEL_SHAPES

    parser.add_argument("--shape", default="tiny", choices=list(MODEL_SHAPES), help="model shape")
    parser.add_argument(
        "--seq", type=int, default=None, help="tokens per row (default: 2048 on GPU, 256 on CPU)"
    )
    parser.add_argument(
        "--micro_batch", "--micro-batch", type=int, nargs="+", default=[4],
        help="rows per step of the recipe; several values run one after another against the same raw loop",
    )
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps (default: 30 on GPU, 6 on CPU)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both (Trainer: torch_compile)"
    )
    parser.add_argument(
        "--raw_compile", action="store_true", help="torch.compile the raw loop only (e.g. against an eager Liger recipe)"
    )
    parser.add_argument(
        "--raw_micro_batch", type=int, default=None, help="rows per step of the raw loop (default: --micro_batch)"
    )
    parser.add_argument(
        "--liger", action="store_true", help="recipe: use_liger_kernel (fused linear cross-entropy)"
    )
    parser.add_argument(
        "--compile_layers",
        action="store_true",
        help="recipe: compile each decoder layer, loss eager (with --liger: Liger's fused loss only, "
        "inductor fuses the rest)",
    )
    parser.add_argument(
        "--attn", default="sdpa",
        help="attention implementation of the recipe's model (hf_ipt_varlen: PyTorch's varlen flash kernel)"
    )
    parser.add_argument(
        "--nan_inf_filter", nargs="+", choices=["on", "off"], default=["on"],
        help="recipe: the Trainer's logging_nan_inf_filter (on, its default, reads the loss back to the host "
        "every step); both `on off` run each micro-batch twice",
    )
    parser.add_argument(
        "--peak_tflops",
        "--peak-tflops",
        type=float,
        default=None,
        help="dense bf16 TFLOP/s of the device for MFU (looked up for H100/H200/A100/L40S/A10G; none on CPU)",
    )
    return parser.parse_args()


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before the raw loop runs (a compiled one takes a minute on a GPU), what would fail after it."""
    from transformers import AutoModelForCausalLM

    from hf_ipt.training import varlen
    from hf_ipt.training.model_init import shape_config

    for name, least in (("seq", 2), ("micro_batch", 1), ("raw_micro_batch", 1), ("steps", 1), ("warmup", 0)):
        for value in getattr(args, name) if isinstance(getattr(args, name), list) else [getattr(args, name)]:
            if value < least:
                raise SystemExit(f"--{name} must be >= {least}, got {value}")
    if args.liger and importlib.util.find_spec("liger_kernel") is None:
        raise SystemExit("--liger: liger-kernel is not installed here (pip install liger-kernel)")
    # transformers checks the attention implementation when it builds a model: build the recipe's on no device
    with torch.device("meta"):
        config = shape_config(args.shape, vocab_size=args.vocab, max_length=args.seq)
        AutoModelForCausalLM.from_config(config, attn_implementation=varlen.prepare(args.attn))


def build_model(args, device: str, attn: str):
    from transformers import AutoModelForCausalLM

    from hf_ipt.training import varlen
    from hf_ipt.training.model_init import shape_config

    torch.manual_seed(0)
    config = shape_config(args.shape, vocab_size=args.vocab, max_length=args.seq)
    return AutoModelForCausalLM.from_config(config, attn_implementation=varlen.prepare(attn)).to(device)


def raw_loop(args, device: str) -> float:
    """Tokens/s of a plain loop: random full rows, labels = inputs, fused AdamW, bf16 autocast on GPU."""
    model = build_model(args, device, "sdpa")
    step_model = torch.compile(model) if args.compile or args.raw_compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device == "cuda")

    def step():
        x = torch.randint(0, args.vocab, (args.raw_micro_batch, args.seq), device=device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = step_model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return args.steps * args.raw_micro_batch * args.seq / (time.perf_counter() - start)


def _documents(vocab: int, seed: int):
    rng = random.Random(seed)
    while True:
        yield [rng.randrange(vocab) for _ in range(rng.randint(100, 3000))]


def _blocks(rank: int, world_size: int, *, vocab: int, seq: int):
    from hf_ipt.training.packing import pack_sequences

    yield from pack_sequences(_documents(vocab, rank), seq)


def _pregenerated(rank: int, world_size: int, *, blocks: list):
    """The packed blocks drawn before timing: random token ids cost Python time a real corpus
    does not (its tokenization has its own benchmark); packing's output and the collator stay in
    the timed steps, as the recipe's own work."""
    yield from itertools.cycle(blocks)


def recipe_step(args, device: str, micro_batch: int, nan_inf_filter: bool) -> tuple[float, int]:
    """Tokens/s of the recipes' Trainer on packed blocks of `micro_batch` rows, and the padding tokens it was fed."""
    from transformers import TrainerCallback

    from hf_ipt.training.card import CardInfo
    from hf_ipt.training.config import TrainingConfig
    from hf_ipt.training.data import sharded_stream
    from hf_ipt.training.trainer import build_trainer

    class Timer(TrainerCallback):
        def on_step_begin(self, targs, state, control, **kwargs):
            if state.global_step == args.warmup:
                _sync(device)
                self.start = time.perf_counter()

        def on_train_end(self, targs, state, control, **kwargs):
            _sync(device)
            self.seconds = time.perf_counter() - self.start

    training = TrainingConfig(
        output_dir=tempfile.mkdtemp(),
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=micro_batch,
        max_length=args.seq,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        torch_compile=args.compile,
        compile_layers=args.compile_layers,
        use_liger_kernel=args.liger,
        # Liger's norm/SwiGLU/RoPE kernels inside compiled layers would be graph breaks: keep its loss only.
        liger_kernel_config={"fused_linear_cross_entropy": True, "rms_norm": False, "swiglu": False, "rope": False}
        if args.liger and args.compile_layers
        else None,
        optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        save_strategy="no",
        logging_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        learning_rate=3e-4,
        peak_tflops=args.peak_tflops,
        logging_nan_inf_filter=nan_inf_filter,
    )
    needed = (args.warmup + args.steps + 1) * micro_batch
    blocks = list(itertools.islice(_blocks(0, 1, vocab=args.vocab, seq=args.seq), needed))
    dataset = sharded_stream(functools.partial(_pregenerated, blocks=blocks), training.world_size)
    trainer = build_trainer(
        build_model(args, device, args.attn), None, dataset, training, CardInfo("pretrain")
    )
    padding = [0]
    collate = trainer.data_collator

    def counting(features):  # positions the collated batch holds beyond the features' real tokens
        batch = collate(features)
        real = sum(len(f["input_ids"]) for f in features)
        padding[0] += batch["input_ids"].numel() - real
        if "attention_mask" in batch:
            padding[0] += int((batch["attention_mask"] == 0).sum())
        return batch

    trainer.data_collator = counting
    timer = Timer()
    trainer.add_callback(timer)
    trainer.train()
    return args.steps * training.tokens_per_step / timer.seconds, padding[0]


def _release(device: str) -> None:
    """Free one recipe run's model, optimizer and compiled graphs before the next: each run compiles afresh
    (a graph kept from another micro-batch would recompile with dynamic shapes, which a run alone does not)."""
    import gc

    torch._dynamo.reset()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    args = parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.seq is None:
        args.seq = 2048 if device == "cuda" else 256
    if args.steps is None:
        args.steps = 30 if device == "cuda" else 6
    if args.raw_micro_batch is None:
        args.raw_micro_batch = args.micro_batch[0]
    check_args(args)
    from hf_ipt.training.callbacks import flops_per_token, peak_flops
    from hf_ipt.training.model_init import num_parameters, shape_config

    config = shape_config(args.shape, vocab_size=args.vocab, max_length=args.seq)
    flops, peak, params = flops_per_token(config), peak_flops(args.peak_tflops), num_parameters(config)
    card = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    raw = raw_loop(args, device)
    raw_mfu = round(raw * flops / peak, 3) if peak else None
    # Printed at once: a recipe run that fails or runs out of time still leaves the baseline.
    print(f"{card}: raw loop ({'compiled' if args.compile or args.raw_compile else 'eager'}, "
          f"mb {args.raw_micro_batch}): {raw:,.0f} tok/s  MFU {raw_mfu}", flush=True)
    for micro_batch, nan_inf_filter in itertools.product(args.micro_batch, args.nan_inf_filter):
        _release(device)
        recipe, padding = recipe_step(args, device, micro_batch, nan_inf_filter == "on")
        result = {
            "device": card,
            "shape": args.shape,
            "params": params,
            "seq": args.seq,
            "micro_batch": micro_batch,
            "raw_micro_batch": args.raw_micro_batch,
            "compile": args.compile,
            "raw_compile": args.compile or args.raw_compile,
            "liger": args.liger,
            "compile_layers": args.compile_layers,
            "attn": args.attn,
            "logging_nan_inf_filter": nan_inf_filter == "on",
            "raw_tok_s": round(raw),
            "recipe_tok_s": round(recipe),
            "ratio": round(recipe / raw, 3),
            "raw_mfu": raw_mfu,
            "recipe_mfu": round(recipe * flops / peak, 3) if peak else None,
            "recipe_padding_tokens": padding,
        }
        # Each run's figures at once, a JSON line each: a later run that fails or runs out of time keeps them.
        print(f"{card}: {args.shape} seq {args.seq} mb {micro_batch} (raw loop mb {args.raw_micro_batch}), "
              f"nan/inf filter {nan_inf_filter}")
        print(f"raw loop : {raw:,.0f} tok/s  MFU {result['raw_mfu']}")
        print(f"recipe   : {recipe:,.0f} tok/s  MFU {result['recipe_mfu']}  padding tokens {padding}")
        print(f"ratio    : {recipe / raw:.2f}x")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
