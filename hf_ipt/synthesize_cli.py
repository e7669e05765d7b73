"""``hf-ipt synthesize``: a resumable, distributed synthesis job (see docs/jobs.md).

    hf-ipt synthesize --corpus "data/*.jsonl" --output_dir out/job --num_shards 64
    hf-ipt synthesize --config job.yaml --rounds 3          # YAML gives defaults, flags override
    torchrun --nproc_per_node 8 -m hf_ipt.synthesize_cli --config job.yaml   # one process per GPU
    accelerate launch --multi_gpu --num_processes 8 -m hf_ipt.synthesize_cli --config job.yaml

Kill it at any moment and run the same command again: it resumes. Each rank (``RANK`` /
``WORLD_SIZE``, or a Slurm array's task, ``--array=0-15:2`` included: `hf_ipt.jobs.world_from_env`)
takes disjoint work units; the last one to finish writes ``data/*.parquet`` and
``manifest.json``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator

from .augment import SynthesisConfig
from .cli import (
    INTERRUPTED,
    parse_dataclasses,
    tidy_help,
    unknown_options,
    usage_errors,
)
from .filters import FilterConfig
from .jobs import JobConfig, filters_removed_line, run_job


def make_parser():
    """`HfArgumentParser` over the three configs, plus ``--config file.yaml`` (as TRL's parser)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((JobConfig, SynthesisConfig, FilterConfig), prog="hf-ipt synthesize")
    parser.add_argument("--config", default=None, help="YAML file with defaults for any option of this command; "
                        "flags given on the command line override it.")
    return tidy_help(parser)


def parse_args(argv: list[str] | None = None) -> tuple[JobConfig, SynthesisConfig, FilterConfig]:
    import argparse

    import yaml

    parser = make_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(args=argv)
    if known.config:
        try:
            with open(known.config, encoding="utf-8") as f:
                defaults = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as error:
            parser.error(f"--config {known.config!r}: {error}")
        if not isinstance(defaults, dict):
            parser.error(f"--config {known.config!r} must hold a mapping of option: value")
        dests = {a.dest for a in parser._actions}
        unknown = sorted(set(defaults) - dests)
        if unknown:
            # `--no_dedup` is a flag, not a key: the YAML spelling is `dedup: false`
            negated = [f"{key.removeprefix('no_')}: {str(not defaults[key]).lower()}" for key in unknown
                       if key.removeprefix("no_") in dests and isinstance(defaults[key], bool)]
            hint = f" For a --no_ flag write {', '.join(negated)}." if negated else ""
            parser.error(unknown_options(parser, [f"--{key}" for key in unknown], config=known.config) + hint)
        for action in parser._actions:  # YAML values become defaults; required ones become optional
            if action.dest in defaults:
                action.default, action.required = _yaml_default(parser, action, defaults[action.dest]), False
    *configs, _ = parse_dataclasses(parser, argv)
    return tuple(configs)


def _yaml_default(parser, action, value):
    """A YAML value as the string a flag would give: argparse then converts it with the option's
    type (``num_shards: true`` and ``window_size: 2.5`` fail as ``--num_shards True`` would,
    rather than passing as ``True`` or a float)."""
    if value is None or action.type is None:
        return value
    if isinstance(value, (list, tuple)):
        if action.nargs in (None, "?"):
            parser.error(f"`{action.dest}` in --config takes one value, not a list ({value!r})"
                         + ("; match several files with one glob, e.g. 'data/*.jsonl'" if action.dest == "corpus" else ""))
        try:
            return [action.type(str(v)) for v in value]
        except (TypeError, ValueError) as error:
            parser.error(f"`{action.dest}` in --config: {error}")
    if isinstance(value, dict):
        if action.type is str:  # engine_kwargs: a mapping is the JSON object it stands for
            return json.dumps(value)
        parser.error(f"`{action.dest}` in --config takes a value, not a mapping ({value!r})")
    return str(value)


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Inside, SIGTERM (a Slurm preemption or time limit, torchrun stopping its workers, `kill`) ends
    the job as Ctrl-C does, by unwinding (exit 143): Python's default ends the process on the spot, and
    vLLM's engine core, a child process, then ran on as an orphan holding the model's memory (the GPU's
    on a GPU, so the resumed job found no room for its own engine)."""
    def stop(signum: int, frame) -> None:
        print(f"\nhf-ipt synthesize: terminated ({signal.Signals(signum).name}). {INTERRUPTED['synthesize']}",
              file=sys.stderr)
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    job, synthesis, filters = parse_args(argv)
    with usage_errors(make_parser()), sigterm_exits():
        manifest = run_job(job, synthesis, filters)
    if manifest is None:
        print("this rank's units are done; the job completes when the last rank finishes", file=sys.stderr)
        return 0
    print(result_line(manifest, job.output_dir))
    return 0


def result_line(manifest: dict, output_dir: str) -> str:
    """The command's last line: rows, pairs, documents read and rejected; a job that wrote no row says why."""
    docs = manifest["docs"]
    if manifest["rows"] == 0 and docs["rejected"] == docs["read"]:
        why = ("the corpus files hold no document (empty files?)" if not docs["read"] else
               f"all {docs['read']} documents were rejected "
               f"({', '.join(f'{reason} {n}' for reason, n in manifest.get('rejects', {}).items())}; rejects.jsonl)")
        return f"0 rows: {why}, nothing was synthesized; check the corpus and --text_column -> {output_dir}"
    removed = filters_removed_line(manifest["filters_removed"])
    return (f"{manifest['rows']} rows, {manifest['pairs']['kept']} pairs from {docs['read']} documents "
            f"({docs['rejected']} rejected; filters removed {removed}) -> {output_dir}")


if __name__ == "__main__":
    from .cli import run_command

    raise SystemExit(run_command("synthesize", main))
