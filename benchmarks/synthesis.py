"""Synthesis throughput: a backend against plain `generate`, same prompts, same process.

The workload has the shape of synthesizer rounds: contexts of 500-2,000 tokens, every other
prompt one-shot (an earlier context + its ~260 tokens of pairs + the new context) when it fits
the 3,696-token prompt budget, and outputs of variable length (mean ~260, at most 400) that end
at EOS. Random weights never end by themselves (their LM head's EOS row is zeroed to be sure),
so each sequence's output length is drawn from that distribution and forced, in this script only:

- ``plain`` (left-padded batches in input order, `model.generate`) and ``transformers`` (the
  backend: length-sorted batches) get a logits processor that allows EOS exactly there;
- ``transformers-cb`` (continuous batching), ``transformers-cb-prefix`` (the same, its paged
  cache kept between rounds: `BackendConfig.prefix_caching`) and ``vllm`` take no per-call
  logits processor:
  each request gets the drawn length as its own token limit, EOS off.

With a real checkpoint (``--model_name_or_path``) a sequence may emit EOS before its drawn
length: the padded modes forbid it until then, the token-limit modes keep generating and the
result is cut at that EOS, so such a sequence differs from ``plain`` (random weights never do).

With ``--rounds M`` (M >= 2) the prompts are chained as a synthesis job chains them: the texts
are split into M rounds, and text i of round r gets as its shot the whole prompt of text i of
round r-1, that prompt's own generated tokens and ``</s>`` (zero-shot when it would not fit the
budget, the chain cut there, as `hf_ipt.chaining` does). Each mode chains its own outputs, so
round r's prompts start with round r-1's: what prefix caching (``transformers-cb-prefix``,
vLLM's own) can reuse; ``equal_to_plain_by_round`` tells where outputs first part from plain's
(later rounds then have other prompts). Warm-up prompts are drawn apart from the timed ones,
so no timed prompt finds its prefix cached by the warm-up.

Printed per mode: raw tok/s (the new contexts' tokens per second: raw corpus text, as in the
goal of 2B raw tokens a day; a one-shot prompt's earlier context and pairs are not raw),
prompt + generated tok/s, generated tok/s, the ratio of raw tok/s to ``plain``, peak GPU memory, and how many sequences equal ``plain`` token
for token (greedy, all tokens before the forced end). A prompt whose generation failed (`errors`)
is counted in no tok/s: its text was not synthesized. See BENCHMARKS.md.

Usage:

    python benchmarks/synthesis.py --shape tiny --num_prompts 32                   # CPU
    python benchmarks/synthesis.py --shape mistral-7b --num_prompts 1024 --batch_size 128 \\
        --modes plain transformers transformers-cb                                # one GPU
    python benchmarks/synthesis.py --shape tiny --modes plain vllm                  # with vLLM
    python benchmarks/synthesis.py --shape mistral-7b --num_prompts 192 --batch_size 64 \\
        --backend_batch_size 256 --max_batch_tokens 262144                         # token-budget batches
    python benchmarks/synthesis.py --shape mistral-7b --rounds 2 --num_prompts 256 --batch_size 64 \\
        --modes plain transformers-cb transformers-cb-prefix                        # chained rounds
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import itertools
import json
import random
import signal
import tempfile
import time
from dataclasses import replace
from typing import NamedTuple

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from hf_ipt.backends import BackendConfig
from hf_ipt.backends.transformers import TransformersBackend
from hf_ipt.cli import install_hint


class Shape(NamedTuple):
    """A random-weight model and the workload scaled to it."""

    model: dict
    context_tokens: tuple[int, int]
    mean_new_tokens: int
    max_new_tokens: int
    max_model_len: int


# fmt: off
SHAPES = {
    "tiny": Shape(  # head_dim 32: vLLM's CPU attention rejects 16
        {"model_type": "llama", "vocab_size": 1024, "hidden_size": 128, "intermediate_size": 256,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
        (50, 200), 26, 40, 512),
    "mistral-7b": Shape(  # the synthesizer: Mistral-7B-v0.1, 4,096-token context
        {"model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096,
         "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 8, "sliding_window": None},
        (500, 2000), 260, 400, 4096),
}
# fmt: on
MODES = ("plain", "transformers", "transformers-cb", "transformers-cb-prefix", "vllm")
CONTINUOUS = ("transformers-cb", "transformers-cb-prefix")


class ModeTimeout(BaseException):
    """A mode ran past `--mode_limit`. Not an `Exception`: the backend's own error handling
    (failed prompts, bisecting retries) must not take it for a failed generation."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise `ModeTimeout` in the main thread once `seconds` of wall time have passed (no limit:
    None). SIGALRM: a `generate` loop, or the wait on continuous batching's results, is stopped
    between two steps, where a stage's `timeout` would end the whole process and the modes after."""
    if not seconds:
        yield
        return

    def stop(signum, frame):
        raise ModeTimeout(f"ran past --mode_limit {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ForceLengths(LogitsProcessor):
    """Row r may emit EOS only as its `lengths[prompt]`-th new token, and must emit it then.

    Built per `generate` call from the left-padded batch; no host sync per step."""

    def __init__(self, input_ids, attention_mask, lengths: dict, eos_token_ids: list[int]):
        rows = zip(input_ids.cpu(), attention_mask.cpu().bool())
        targets = [lengths[tuple(ids[mask].tolist())] for ids, mask in rows]
        self.targets = torch.tensor(targets, device=input_ids.device)
        self.start, self.eos = input_ids.shape[1], eos_token_ids

    def __call__(self, input_ids, scores):
        at_end = (self.targets == input_ids.shape[1] - self.start + 1)[:, None]
        only_eos = torch.full_like(scores[:1], float("-inf"))
        only_eos[:, self.eos[0]] = 0.0
        scores = scores.clone()
        scores[:, self.eos] = float("-inf")
        return torch.where(at_end, only_eos, scores)


def random_tokenizer(vocab_size: int):
    """A word-level tokenizer covering every id of a random-weight model (decoding is cheap)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    words = special + [f"t{i}" for i in range(len(special), vocab_size)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")  # fmt: skip


def load_model(args, device: str, dtype):
    """(model, tokenizer): random weights of `--shape`, or `--model_name_or_path`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=dtype)
        return model.to(device).eval(), AutoTokenizer.from_pretrained(args.model_name_or_path)
    shape = dict(SHAPES[args.shape].model)
    config = AutoConfig.for_model(shape.pop("model_type"), **shape, max_position_embeddings=8192,
                                  bos_token_id=1, eos_token_id=2, pad_token_id=3)  # fmt: skip
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        # Never EOS by itself (its logit is 0, below the max of thousands of random logits):
        # only the drawn lengths end sequences, in every mode.
        model.get_output_embeddings().weight.data[config.eos_token_id] = 0
    return model.eval(), random_tokenizer(config.vocab_size)


class Workload(NamedTuple):
    """Each round's new prompts (contexts, BOS first) and the output length drawn for each."""

    contexts: list[list[list[int]]]
    new_tokens: list[list[int]]
    budget: int
    chained: bool
    raw: list[list[int]]  # each prompt's new-context tokens: raw corpus text (BOS and shots are not)

    @property
    def raw_tokens(self) -> int:
        return sum(map(sum, self.raw))


def make_workload(args, tokenizer, budget: int, count: int | None = None, seed: int | None = None,
                  rounds: int | None = None) -> Workload:
    """Contexts of random token ids in the synthesizer's shape and each one's output length.

    One round (`--rounds 1`): every other prompt gets a one-shot prefix of random ids (an earlier
    context + pairs) when it fits; it is not raw text. Chained rounds: the shots are the earlier
    rounds' real prompts and outputs, built as the run goes (`run_rounds`)."""
    rng = random.Random(args.seed if seed is None else seed)
    ids = sorted(set(range(len(tokenizer))) - set(tokenizer.all_special_ids))
    mean, count = args.mean_new_tokens, args.num_prompts if count is None else count

    def new_tokens() -> int:
        return min(args.max_new_tokens, max(2, round(rng.gauss(mean, 0.35 * mean))))

    def context() -> list[int]:
        return [tokenizer.bos_token_id] + rng.choices(ids, k=rng.randint(*args.context_tokens))[: budget - 1]

    rounds = args.rounds if rounds is None else rounds
    if rounds > 1:
        if count < rounds:
            raise SystemExit(f"--num_prompts {count} is fewer than --rounds {rounds}: one text a round at least")
        per_round = count // rounds  # texts per round; a remainder is left out, as the header says
        contexts = [[context() for _ in range(per_round)] for _ in range(rounds)]
        raw = [[len(c) - 1 for c in r] for r in contexts]
        return Workload(contexts, [[new_tokens() for _ in r] for r in contexts], budget, True, raw)
    prompts, lengths, raw = [], [], []
    for i in range(count):
        prompt = context()
        shot = rng.choices(ids, k=rng.randint(*args.context_tokens) + new_tokens())
        raw.append(len(prompt) - 1)
        if i % 2 and len(shot) + len(prompt) <= budget:  # one-shot when it fits
            prompt = [prompt[0]] + shot + prompt[1:]
        prompts.append(prompt)
        lengths.append(new_tokens())
    return Workload([prompts], [lengths], budget, False, [raw])


def run_rounds(run, backend, workload: Workload, lengths: dict) -> tuple[list[list[int]], list]:
    """Run `workload` round by round through `run`; returns every prompt and its generation, in
    round order. Text i of round r continues the chain of text i of round r-1: that prompt, its
    generated tokens and EOS, then the new context, when it fits the budget."""
    eos = backend.eos_token_ids[0]
    prompts_all, generations_all, previous = [], [], []
    for round_contexts, round_lengths in zip(workload.contexts, workload.new_tokens):
        prompts = []
        for i, context in enumerate(round_contexts):
            prompt = context
            if workload.chained and i < len(previous) and previous[i][1].error is None:
                before, generation = previous[i]
                # the drawn length's last token is the EOS: padded modes emit it, per-request limits
                # (continuous batching, vLLM) end there with another token instead
                shot = before + generation.token_ids[:-1] + [eos]
                if len(shot) + len(context) <= workload.budget:
                    prompt = shot + context
            lengths[tuple(prompt)] = round_lengths[i]
            prompts.append(prompt)
        generations = run(backend, prompts, lengths)
        previous = list(zip(prompts, generations))
        prompts_all += prompts
        generations_all += generations
    return prompts_all, generations_all


def run_plain(backend, prompts, lengths):
    """The baseline: padded batches in input order through plain `model.generate`."""
    out, size, device = [], backend.config.batch_size, backend.device
    for batch in (prompts[i : i + size] for i in range(0, len(prompts), size)):
        width = max(map(len, batch))
        ids = [[backend.pad_token_id] * (width - len(p)) + p for p in batch]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in batch]
        ids, mask = torch.tensor(ids, device=device), torch.tensor(mask, device=device)
        force = ForceLengths(ids, mask, lengths, backend.eos_token_ids)
        with torch.inference_mode():
            new = backend.model.generate(
                input_ids=ids, attention_mask=mask, logits_processor=LogitsProcessorList([force]),
                generation_config=backend._generation_config(),
            )[:, width:].tolist()  # fmt: skip
        out += [backend._to_generation(len(p), row) for p, row in zip(batch, new)]
    return out


def run_backend(backend, prompts, lengths):
    """The backend's own `generate`, its engine call patched to force the drawn lengths."""
    target, name, patched = forcing(backend, lengths)
    setattr(target, name, patched)
    try:
        return backend.generate(prompts)
    finally:
        delattr(target, name)  # back to the class's method


def forcing(backend, lengths):
    """(object, method name, replacement) that ends each sequence at its drawn length."""
    if hasattr(backend, "llm"):  # vLLM: one SamplingParams per request, EOS off
        from vllm import SamplingParams

        def generate(requests, params, **kwargs):
            limits = [lengths[tuple(r["prompt_token_ids"])] for r in requests]
            params = [
                SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in limits
            ]
            return type(backend.llm).generate(backend.llm, requests, params, **kwargs)

        return backend.llm, "generate", generate
    model = backend.model
    if backend.config.continuous_batching:  # a token limit per request, EOS off
        return (
            model,
            "generate_batch",
            lambda inputs, **kw: continuous_batch(model, inputs, lengths, cb_kwargs=backend.cb_kwargs, **kw),
        )

    def generate(**kwargs):
        backend.engine_calls += 1
        force = ForceLengths(
            kwargs["input_ids"], kwargs["attention_mask"], lengths, backend.eos_token_ids
        )
        return type(model).generate(model, **kwargs, logits_processor=LogitsProcessorList([force]))

    return model, "generate", generate


def continuous_batch(model, inputs, lengths, generation_config, continuous_batching_config,
                     persistent_manager=False, cb_kwargs=None):
    """`generate_batch` with a token limit per request, which `generate_batch` cannot take (the
    same workload hints as it passes); `cb_kwargs` replace fields of the backend's
    `ContinuousBatchingConfig` (`--cb_kwargs`)."""
    from transformers.generation.continuous_batching.utils import WorkloadHints

    results = {}
    config = dataclasses.replace(continuous_batching_config, **(cb_kwargs or {}))
    hints = WorkloadHints(max(map(len, inputs)), generation_config.max_new_tokens, len(inputs))
    with model.continuous_batching_context_manager(
        generation_config=generation_config, continuous_batching_config=config,
        persistent_manager=persistent_manager, workload_hints=hints,
    ) as manager:  # fmt: skip
        for i, prompt in enumerate(inputs):
            limit = lengths[tuple(prompt)]
            manager.add_request(prompt, request_id=f"r{i}", max_new_tokens=limit, eos_token_id=-1)
        while len(results) < len(inputs) and manager.is_running():
            result = manager.get_result(timeout=1)
            if result is not None and result.is_finished():
                results[result.request_id] = result
    return results


def measure(mode, run, backend, workload, lengths, warmup, reference=None, repeats=1):
    """Run `warmup` (prompts of the same shape, apart from the timed ones) untimed, then time
    `run` over every round of `workload`, best of `repeats` (GPU synced). A cache kept by
    `prefix_caching` is dropped and warmed again before each later repeat, so that no timed run
    finds the prefixes of the one before."""
    gpu = torch.cuda.is_available()

    def warm() -> float:
        start = time.perf_counter()
        run_rounds(run, backend, warmup, lengths)
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    backend.engine_calls = 0
    warmup_seconds = warm()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    # Tokens through the input embedding: prompt pages reused from a cache are not (shape only: no sync).
    embedded = [0]
    model = getattr(backend, "model", None)  # vLLM's runs in its engine
    hook = model and model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: embedded.__setitem__(0, embedded[0] + args[0].numel())
    )
    seconds = float("inf")
    try:
        for repeat in range(repeats):
            if repeat and getattr(backend.config, "prefix_caching", False):
                backend._drop_kept_cache()
                warm()
            backend.engine_calls, embedded[0] = 0, 0  # of the timed run (padded `generate` calls: batches, retries)
            start = time.perf_counter()
            prompts, generations = run_rounds(run, backend, workload, lengths)
            if gpu:
                torch.cuda.synchronize()
            seconds = min(seconds, time.perf_counter() - start)
    finally:
        if hook:
            hook.remove()
    # Throughput counts the prompts that were synthesized: a failed one's text was not.
    done = [g.error is None for g in generations]
    raw_tokens = sum(n for n, ok in zip(itertools.chain.from_iterable(workload.raw), done) if ok)
    prompt_tokens = sum(len(p) for p, ok in zip(prompts, done) if ok)
    new_tokens = sum(g.num_generated_tokens for g in generations)
    # greedy tokens before the forced end, per round (a round that differs gives the next other prompts)
    same = [g.token_ids[:-1] == r.token_ids[:-1] for g, r in zip(generations, reference or [])]
    bounds = itertools.accumulate(len(r) for r in workload.contexts)
    by_round = [sum(same[end - len(r) : end]) for r, end in zip(workload.contexts, bounds)]
    return generations, {
        "mode": mode, "prompts": len(prompts), "rounds": len(workload.contexts), "seconds": round(seconds, 2),
        "warmup_seconds": round(warmup_seconds, 2), "errors": sum(g.error is not None for g in generations),
        "raw_tokens": raw_tokens, "prompt_tokens": prompt_tokens, "generated_tokens": new_tokens,
        "embedded_tokens": embedded[0] if model else None,
        "raw_tok_s": round(raw_tokens / seconds, 1),
        "prompt_and_generated_tok_s": round((prompt_tokens + new_tokens) / seconds, 1),
        "generated_tok_s": round(new_tokens / seconds, 1),
        # in this process: vLLM's engine memory is gpu_memory_utilization, not counted here
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "equal_to_plain": sum(same) if reference else None,
        "equal_to_plain_by_round": by_round if reference else None,
    }  # fmt: skip


def check_args(args) -> None:
    """Refuse, before a model is loaded, what would fail or mislead only after minutes of measuring."""
    for name in ("num_prompts", "rounds", "repeats", "warmup_prompts"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.mode_limit is not None and args.mode_limit <= 0:
        raise SystemExit(f"--mode_limit must be > 0 seconds, got {args.mode_limit:g}")
    low, high = args.context_tokens
    if not 1 <= low <= high:
        raise SystemExit(f"--context_tokens MIN MAX must satisfy 1 <= MIN <= MAX, got {low} {high}")
    if "plain" in args.modes and args.modes[0] != "plain":
        # the baseline must run first: the modes before it would get no ratio and no equality check
        raise SystemExit(f"--modes: put plain first, got {' '.join(args.modes)}")
    if "vllm" in args.modes and importlib.util.find_spec("vllm") is None:
        raise SystemExit(f"--modes vllm: vLLM is not installed here ({install_hint('vllm')}); drop the mode")
    if set(args.modes) & set(CONTINUOUS):
        from transformers import ContinuousBatchingConfig

        unknown = set(args.cb_kwargs) - {field.name for field in dataclasses.fields(ContinuousBatchingConfig)}
        if unknown:  # else every request of the mode fails, a row of errors
            raise SystemExit(f"--cb_kwargs: {sorted(unknown)} are no fields of ContinuousBatchingConfig")


def mode_config(args, config: BackendConfig, mode: str) -> BackendConfig:
    """The backend's settings in a transformers `mode` (checked when built: all are built before measuring)."""
    return replace(
        config, continuous_batching=mode in CONTINUOUS, batch_size=args.backend_batch_size or args.batch_size,
        max_batch_tokens=args.max_batch_tokens, static_cache=args.static_cache and mode == "transformers",
        prefix_caching=mode == "transformers-cb-prefix",
    )  # fmt: skip


def write_rows(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)


def main(args) -> list[dict]:
    for name, value in SHAPES[args.shape]._asdict().items():
        if name != "model" and getattr(args, name) is None:
            setattr(args, name, value)
    check_args(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (
        torch.bfloat16 if device.startswith("cuda") else torch.float32
    )
    config = BackendConfig(
        args.model_name_or_path or args.shape, backend="transformers", batch_size=args.batch_size,
        max_model_len=args.max_model_len, max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    configs = {mode: mode_config(args, config, mode) for mode in args.modes if mode.startswith("transformers")}
    model, tokenizer = load_model(args, device, dtype)
    backend = TransformersBackend.from_model(model, tokenizer, config)
    workload = make_workload(args, tokenizer, config.prompt_budget)
    warmup = make_workload(args, tokenizer, config.prompt_budget, count=args.warmup_prompts or args.batch_size,
                           seed=args.seed + 1, rounds=1)
    contexts = [n + 1 for r in workload.raw for n in r]  # BOS + raw text: a one-shot prompt's shot is not counted
    news = [n for r in workload.new_tokens for n in r]
    print(f"# {config.model_name_or_path} on {device}: {len(contexts)} prompts in {len(workload.contexts)} "
          f"round(s), {'chained' if workload.chained else 'every other one one-shot'}; new contexts of "
          f"{sum(contexts) / len(contexts):.0f} tokens on average (max {max(contexts)}), {workload.raw_tokens} raw "
          f"tokens in all, {sum(news) / len(news):.0f} new tokens on average", flush=True)  # fmt: skip
    reference, rows, lengths = None, [], {}
    for mode in args.modes:
        engine = None  # the mode's own backend, once built
        try:
            with time_limit(args.mode_limit):
                if mode == "plain":
                    reference, row = measure(mode, run_plain, backend, workload, lengths, warmup, None, args.repeats)
                else:
                    engine = vllm_backend(args, config, model, tokenizer) if mode == "vllm" else (
                        TransformersBackend.from_model(model, tokenizer, configs[mode])
                    )
                    engine.cb_kwargs = args.cb_kwargs
                    row = measure(mode, run_backend, engine, workload, lengths, warmup, reference, args.repeats)[1]
        except ModeTimeout as stopped:
            # no figures: the modes after it still run (in this process, on the model already loaded)
            row = {"mode": mode, "timed_out": True, "mode_limit_seconds": args.mode_limit, "raw_tok_s": None}
            print(f"# {mode} {stopped}: no figures; going on with the next mode", flush=True)
        if mode.startswith("transformers") and engine is not None:
            row.update(batch_size=engine.config.batch_size, max_batch_tokens=engine.config.max_batch_tokens,
                       static_cache=engine.config.static_cache, prefix_caching=engine.config.prefix_caching,
                       engine_calls=getattr(engine, "engine_calls", 0))
        if mode in CONTINUOUS and engine is not None:
            row.update(cb_kwargs=args.cb_kwargs)
            engine.close()  # a kept manager lives on the shared model: later modes must not find it
        base = row if mode == "plain" else next((r for r in rows if r["mode"] == "plain"), None)
        both = base and row["raw_tok_s"] is not None and base["raw_tok_s"] is not None
        row["ratio_to_plain"] = round(row["raw_tok_s"] / base["raw_tok_s"], 2) if both else None
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after each mode: a later mode that fails or runs out of time keeps the rows before it
            write_rows(args.json, rows)
    return rows


def vllm_backend(args, config, model, tokenizer):
    """vLLM loads from a folder: save the model there first when it has random weights."""
    from hf_ipt.backends.base import default_of
    from hf_ipt.backends.vllm import VLLMBackend

    path = args.model_name_or_path
    if not path:
        path = tempfile.mkdtemp(prefix="hf_ipt_bench_")
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    # the padded modes' batch size is the transformers backend's: vLLM schedules its own batches
    vllm_config = replace(config, model_name_or_path=path, backend="vllm", batch_size=default_of(config, "batch_size"))
    return VLLMBackend(replace(vllm_config, engine_kwargs=args.vllm_kwargs))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--shape", choices=sorted(SHAPES), default="tiny", help="random-weight model + workload")
    add("--model_name_or_path", help="a real checkpoint instead of random weights")
    add("--modes", nargs="+", choices=MODES, default=["plain", "transformers"])
    add("--num_prompts", type=int, default=64)
    add("--batch_size", type=int, default=16, help="prompts per generate call (padded modes)")
    add("--backend_batch_size", type=int, help="transformers modes: prompts per call (default: --batch_size)")
    add("--max_batch_tokens", type=int, help="transformers: KV-cache tokens per batch at most "
        "(BackendConfig.max_batch_tokens); use with a larger --backend_batch_size")
    add("--rounds", type=int, default=1, help="chained rounds (M): round r's prompts continue round r-1's prompts "
        "and outputs, as a synthesis job chains them (default 1: independent prompts, every other one one-shot)")
    add("--cb_kwargs", type=json.loads, default={}, help="continuous batching modes: JSON of ContinuousBatchingConfig "
        "fields to replace, e.g. '{\"use_cuda_graph\": false}'")
    add("--static_cache", action="store_true", help="transformers: a pre-allocated KV cache, not compiled "
        "(BackendConfig.static_cache)")
    add("--context_tokens", type=int, nargs=2, metavar=("MIN", "MAX"), help="default: per shape")
    add("--mean_new_tokens", type=int, help="default: per shape")
    add("--max_new_tokens", type=int, help="default: per shape")
    add("--max_model_len", type=int, help="default: per shape")
    add("--device", help="default: cuda when available")
    add("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on GPU, float32 on CPU "
        "(float32 on GPU checks token-for-token equality free of bf16 rounding)")
    add(
        "--vllm_kwargs",
        type=json.loads,
        default={},
        help="JSON for vllm.LLM: '{\"enforce_eager\": true}'",
    )
    add("--json", help="also write the rows to this file (rewritten after each mode)")
    add("--repeats", type=int, default=1, help="timed runs per mode; the fastest counts")
    add("--warmup_prompts", type=int, help="prompts of each mode's untimed warm-up pass, drawn as the timed ones "
        "are (default: --batch_size; fewer spare a 7B model a full batch per mode, but warm a smaller batch "
        "shape than the timed one)")
    add("--mode_limit", type=float, help="seconds of wall time per mode (warm-up included) after which it is "
        "stopped and recorded as timed_out, with no figures, and the next mode runs in the same process "
        "(default: no limit)")
    add("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":  # the guard vLLM's worker processes need
    main(make_parser().parse_args())
