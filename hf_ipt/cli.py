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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packaging.requirements import Requirement


class UsageError(ValueError):
    """A value the user gave cannot work: a corpus that matches no file, a job folder that holds
    another job, an unknown key in a config file. The library raises it (a `ValueError`); the
    commands report it like argparse's own errors (usage line, message, exit status 2)."""


class MissingFileError(UsageError, FileNotFoundError):
    """A path the user gave does not exist (catchable as either parent)."""


class MissingDependencyError(UsageError, ImportError):
    """A setting the user chose needs a package that is not installed (``backend="vllm"``
    without vLLM): the message names the install command and the alternative."""


class HubUnreachableError(UsageError, ConnectionError):
    """A value the user gave is read from the Hub, and the Hub cannot be reached: offline mode
    (``HF_HUB_OFFLINE=1``) or no network (catchable as either parent; see `needs_hub`)."""


def hub_unreachable_error(what: str, alternative: str, cause: BaseException | None = None) -> HubUnreachableError:
    """The one-line error for `what`, a value that needs the Hub (``"`corpus` 'org/news' is read from the
    Hub"``): why the Hub cannot be reached (offline mode, or `cause`), how to reach it, and
    `alternative`, the way that needs no Hub."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or "OfflineModeIsEnabled" in f"{type(cause).__name__} {cause}":
        # `datasets` alone offline: `hf_ipt.corpus.hub_offline` says so in its cause
        name = "HF_DATASETS_OFFLINE" if not constants.HF_HUB_OFFLINE and "HF_DATASETS_OFFLINE" in str(cause) else (
            "HF_HUB_OFFLINE")
        why, retry = f"offline mode: {name} is set", f"unset {name} where the Hub is reachable"
    else:
        why = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else 'no connection'}"
        retry = f"check the network (the Hub is {constants.ENDPOINT}, HF_ENDPOINT) or run where the Hub is reachable"
    return HubUnreachableError(f"{what}, which cannot be reached ({why}): {retry}, or {alternative}")


def is_hub_unreachable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the Hub could not be reached at all:
    offline mode (`OfflineModeIsEnabled`, `datasets`' "Couldn't reach" `ConnectionError`), no network
    or a timeout, or a file neither downloadable nor cached (`LocalEntryNotFoundError`, which
    transformers raises an `OSError` from). A refused request (an HTTP status) is not one."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError, LocalEntryNotFoundError]
    transport = ("ConnectError", "TimeoutException")  # of huggingface_hub's HTTP client, by version
    for module, names in (("httpx2", transport), ("httpx", transport), ("requests", ("ConnectionError", "Timeout"))):
        try:
            kinds += [getattr(importlib.import_module(module), name) for name in names]
        except (ImportError, AttributeError):
            continue
    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, tuple(kinds)) and not isinstance(chain, BrokenPipeError):
            return True
        chain = chain.__cause__
    return False


@contextlib.contextmanager
def needs_hub(what: str, alternative: str) -> Iterator[None]:
    """Inside, a failure to reach the Hub (`is_hub_unreachable`) becomes a `HubUnreachableError`
    (`hub_unreachable_error`): commands report it as a usage error, one line, not a traceback."""
    try:
        yield
    except HubUnreachableError:
        raise
    except Exception as error:
        if not is_hub_unreachable(error):
            raise
        raise hub_unreachable_error(what, alternative, error) from error


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


def check_own_folder(folder: str | os.PathLike, marker: str, command: str, use: str) -> None:
    """Refuse, before any work, a `folder` that `command` writes into and replaces when rerun
    (`replace_own_folder`) but that holds files without `marker`: another's files, which the rerun
    would delete or mix with its own. `use` says what `command` does with it, for the message."""
    folder = Path(folder)
    foreign = folder.is_file() or (folder.is_dir() and any(folder.iterdir()))
    if foreign and not (folder / marker).is_file():
        raise UsageError(f"{folder} holds files that no earlier `{command}` run wrote, and {use}: give another "
                         "--output_dir")


def replace_own_folder(folder: str | os.PathLike, marker: str, command: str) -> bool:
    """Make `folder` afresh with `marker` in it, deleting an earlier run's first (`check_own_folder`
    passed it): none of its files (a stale adapter, a checkpoint a fresh run would mix with) stays.
    Returns whether an earlier one was deleted."""
    import shutil

    folder = Path(folder)
    earlier = folder.exists()
    if earlier:
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / marker).write_text(f"written by `{command}`, which replaces this folder when rerun\n")
    return earlier


def checkpoint_folders(path: str) -> list[str]:
    """The Trainer's ``checkpoint-<step>`` folders in `path`, by step; none when `path` is no folder."""
    import re

    if not os.path.isdir(path):
        return []
    found = ((int(m.group(1)), os.path.join(path, name)) for name in os.listdir(path)
             if (m := re.fullmatch(r"checkpoint-(\d+)", name)))  # transformers' PREFIX_CHECKPOINT_DIR
    return [folder for _, folder in sorted(found) if os.path.isdir(folder)]


# subcommand -> (module with `main(argv)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hf_ipt.demo", "the whole pipeline on a real corpus, CPU-only: synthesize, train, evaluate"),
    "augment": ("hf_ipt.augment_cli", "stream a corpus through a synthesizer into augmented Parquet"),
    "synthesize": ("hf_ipt.synthesize_cli", "resumable, multi-rank synthesis job: corpus -> Parquet shards + manifest"),
    "eval": ("hf_ipt.evaluation.cli", "evaluate a checkpoint on the domain task sets"),
    "push": ("hf_ipt.publish_cli", "upload synthesis output to a Hub dataset repo, one config per corpus"),
}


def install_hint(extra: str) -> str:
    """How to install hf_ipt's `extra`: its packages by name, as hf_ipt's own metadata lists them (hf_ipt itself is
    on no package index: naming it with its extra asks PyPI for a project it does not hold), and the editable
    install from a checkout."""
    import shlex
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    try:
        listed = requires("hf_ipt") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        listed = []
    packages = [str(r).split(";")[0] for r in map(Requirement, listed) if _of_extra(r, extra)]
    named = f"pip install {' '.join(shlex.quote(p) for p in packages)}, " if packages else ""
    return f"{named}hf_ipt's `{extra}` extra (in an hf_ipt checkout: pip install -e '.[{extra}]')"


def _of_extra(requirement: Requirement, extra: str) -> bool:
    """Whether a ``Requires-Dist`` requirement is needed by `extra` alone (its marker, however it is spelled)."""
    marker = requirement.marker
    return marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""})


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean X?)`` for the known option or key closest to a misspelled `name`, else ``""``."""
    close = closest(name, known)
    return f" (did you mean {close}?)" if close else ""


def closest(name: str, known: list[str], cutoff: float = 0.75) -> str | None:
    """The name of `known` closest to a misspelled `name`, or `None` when none is close."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return close[0] if close else None


def unknown_options(parser: argparse.ArgumentParser, given: list[str], config: str | None = None) -> str:
    """The error for options `parser` does not know: each flag of `given` (the command line's leftovers)
    with the closest known one, or, with `config`, each key of that config file (`given` as ``--key``)."""
    if config is None:  # the command line has flags, a config file the options' names
        known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        named = [option.split("=", 1)[0] for option in given if _is_flag(option)]
    else:
        known = sorted({action.dest for action in parser._actions} - {"help"})
        named = [option.removeprefix("--") for option in given]
    named = [name + did_you_mean(name, known) for name in named]
    if not named:
        return f"unrecognized arguments: {' '.join(given)}"
    plural = "s" if len(named) > 1 else ""
    if config is not None:
        return (f"unknown key{plural} in the config file {config!r}: {', '.join(named)}. "
                "Every key is the name of an option (--help lists them)")
    return f"unrecognized option{plural}: {', '.join(named)}"


def _is_flag(arg: str) -> bool:
    """Whether a command-line leftover is an option (``--ouput_dir``), not the value that followed one (``-1``)."""
    try:
        float(arg)
    except ValueError:
        return arg.startswith("-")
    return False


def refuse_unknown_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Exit like argparse (usage line, exit status 2) when `argv` holds what `parser` cannot place: an unknown
    option, named with the closest known one (`unknown_options`), or the files of an unquoted glob the shell
    expanded (``--corpus data/*.jsonl``: the second file is left over). Checked before anything else, so that
    a typo is named rather than what it left unset (``--ouput_dir`` used to say "`corpus` is required" or
    "arguments are not used by the HfArgumentParser")."""
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        return  # the parse that follows prints the help, with required options as such (not in brackets here)
    required = [action for action in parser._actions if action.required]
    for action in required:  # a required option may be missing too: the typo is named first
        action.required = False
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        _, unknown = parser.parse_known_args(args)
    finally:
        for action in required:
            action.required = True
    paths = [arg for arg in unknown if os.path.exists(arg)]
    if paths and not any(_is_flag(arg) for arg in unknown):
        parser.error(f"{len(paths)} path(s) follow an option that takes one value, such as {paths[0]!r}: the shell "
                     f"expanded an unquoted glob into files; quote it ({_quoted_glob(args, paths[0])}) so that one "
                     f"pattern reaches {parser.prog}")
    if unknown:
        parser.error(unknown_options(parser, unknown))


def _quoted_glob(args: list[str], path: str) -> str:
    """The option before `path` in `args` with a quoted pattern like it: ``--raw_dataset 'data/*.txt'``."""
    before = args[:args.index(path)] if path in args else args
    option = next((arg.split("=")[0] for arg in reversed(before) if _is_flag(arg)), "--corpus")
    stem, suffix = os.path.splitext(path)
    if suffix in (".gz", ".bz2", ".xz", ".zst"):  # x.jsonl.gz -> *.jsonl.gz
        suffix = os.path.splitext(stem)[1] + suffix
    return f"{option} '{os.path.join(os.path.dirname(path), '*' + suffix)}'"


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
    """`HfArgumentParser.parse_args_into_dataclasses`, an unknown option (`refuse_unknown_options`) and a
    value that a config's checks refuse reported like argparse's own errors (usage line, message, exit
    status 2), not as a traceback."""
    refuse_unknown_options(parser, argv)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=argv))
    except ValueError as error:
        parser.error(str(error))


class _DefaultsSaidOnce(argparse.ArgumentDefaultsHelpFormatter):
    """`HfArgumentParser`'s formatter, less the ``(default: None)`` it appends to a required option and to a
    help that says its own default (``Config name (default: the corpus name). (default: None)``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def tidy_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Help that does not mislead: `HfArgumentParser` gives each `--no_x` flag the help of `--x`
    and "(default: False)"; here it says what it does. A `bool | None` option defaulting to
    None ("unset") takes a bare ``--x`` for true, as a `bool` option does (not "expected one argument").
    An error prints a one-line usage above its message, not every option (26 lines above the one that
    says what is wrong, 140 for a recipe); ``--help`` prints them all."""
    from transformers.hf_argparser import string_to_bool

    def short_usage(file=None) -> None:
        parser._print_message(f"usage: {parser.prog} [options] (all of them: {parser.prog} --help)\n",
                              file or sys.stderr)

    parser.print_usage = short_usage
    parser.formatter_class = _DefaultsSaidOnce

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
