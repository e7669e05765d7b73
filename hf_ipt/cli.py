"""The ``hf-ipt`` command: one subcommand per library entry point.

Each subcommand lives in its own module exposing ``main(argv) -> int``; this file only
dispatches, so ``hf-ipt --help`` stays fast and imports nothing heavy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator


class UsageError(ValueError):
    """A value the user gave cannot work: a corpus that matches no file, a job folder that holds
    another job, an unknown key in a config file. The library raises it (a `ValueError`); the
    commands report it like argparse's own errors (usage line, message, exit status 2)."""


class MissingFileError(UsageError, FileNotFoundError):
    """A path the user gave does not exist (catchable as either parent)."""


class MissingDependencyError(UsageError, ImportError):
    """A setting the user chose needs a package that is not installed (``backend="vllm"``
    without vLLM): the message names the install command and the alternative."""


def check_output_dir(path: str, where: str) -> str:
    """`path` with ``~`` expanded (a quoted flag or a YAML value: no shell did it); an output folder
    that cannot be made because it, or a folder above it, is a file is refused before any work,
    not when the results are written."""
    import os

    path = os.path.expanduser(path)
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        which = "is a file" if existing == os.path.abspath(path) else f"is inside the file {existing!r}"
        raise ValueError(f"`output_dir` {path!r} {which}: give a folder ({where})")
    return path


# subcommand -> (module with `main(argv)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hf_ipt.demo", "the whole pipeline on a real corpus, CPU-only: synthesize, train, evaluate"),
    "augment": ("hf_ipt.augment_cli", "stream a corpus through a synthesizer into augmented Parquet"),
    "synthesize": ("hf_ipt.synthesize_cli", "resumable, multi-rank synthesis job: corpus -> Parquet shards + manifest"),
    "eval": ("hf_ipt.evaluation.cli", "evaluate a checkpoint on the domain task sets"),
    "push": ("hf_ipt.publish_cli", "upload synthesis output to a Hub dataset repo, one config per corpus"),
}


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean X?)`` for the known option or key closest to a misspelled `name`, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def describe_changes(old: dict, new: dict) -> list[str]:
    """What differs between two saved settings, field by field: ``synthesis.rounds 2 -> 3``."""
    out = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            out += [f"{key}.{f} {before.get(f)!r} -> {after.get(f)!r}"
                    for f in sorted(set(before) | set(after)) if before.get(f) != after.get(f)]
        else:
            out.append(f"{key} {before!r} -> {after!r}")
    return out


def parse_dataclasses(parser, argv: list[str] | None) -> tuple:
    """`HfArgumentParser.parse_args_into_dataclasses`, a value that a config's checks refuse
    reported like argparse's own errors (usage line, message, exit status 2), not as a traceback."""
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as error:
        parser.error(str(error))


def tidy_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Help that does not mislead: `HfArgumentParser` gives each `--no_x` flag the help of `--x`
    and "(default: False)"; here it says what it does. A `bool | None` option defaulting to
    None ("unset") takes a bare ``--x`` for true, as a `bool` option does (not "expected one argument")."""
    from transformers.hf_argparser import string_to_bool

    for action in parser._actions:
        if isinstance(action, argparse._StoreFalseAction) and action.option_strings[0].startswith("--no_"):
            action.help = f"Turn --{action.dest} off (it is on by default)."
            action.default = argparse.SUPPRESS  # no "(default: False)": the value lives on --{dest}
        elif action.type is string_to_bool and action.default is None and action.nargs is None:
            action.nargs, action.const = "?", True
    return parser


@contextlib.contextmanager
def usage_errors(parser) -> Iterator[None]:
    """Inside, a `UsageError` (found while running, e.g. a job folder holding another job)
    exits like a parsing error; any other exception keeps its traceback."""
    try:
        yield
    except UsageError as error:
        parser.error(str(error))


def _usage() -> str:
    lines = ["usage: hf-ipt <command> [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `hf-ipt <command> --help` for a command's options; `hf-ipt --version` prints the version."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The ``hf-ipt`` command. Output piped into a reader that leaves early (``hf-ipt --help | head -1``)
    ends quietly with status 141 (128 + SIGPIPE, as a shell reports it), not a BrokenPipeError traceback."""
    try:
        try:
            return _dispatch(argv)
        finally:
            sys.stdout.flush()  # inside the try: the interpreter's own flush at exit would print the error
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more is written to the pipe
        return 141


def _dispatch(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] == "--version":
        from . import __version__

        print(f"hf-ipt {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"hf-ipt: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_command(argv[0], module.main, argv[1:])


def run_command(name: str, main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a subcommand's `main` (from ``hf-ipt name`` or ``python -m``, as torchrun and
    ``accelerate launch`` start `synthesize`): Ctrl-C says what the command kept, exit 130."""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"\nhf-ipt {name}: interrupted. {INTERRUPTED.get(name, '')}".rstrip(), file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it


# What an interrupted command kept, and how to go on.
INTERRUPTED = {
    "synthesize": "Finished units are kept: rerun the same command to resume.",
    "augment": "Its data.parquet was not written or replaced: rerun the command.",
}


if __name__ == "__main__":
    sys.exit(main())
