"""Resumable, distributed synthesis jobs: a corpus in, Parquet shards and a manifest out.

    >>> from hf_ipt.jobs import JobConfig, run_job
    >>> manifest = run_job(JobConfig(corpus="data/*.jsonl", output_dir="out"))

The corpus is cut into a fixed number of work units (`corpus.make_shards`), independent of
the number of processes; rank ``r`` of ``w`` takes units ``i % w == r``, with ranks read from
the launcher's environment (see `world_from_env`). Layout of `output_dir`::

    job.json               settings + units, written once the synthesizer has loaded; once a unit is
                           done, a rerun with other settings is refused (engine tuning aside: `plan_job`)
    pairs/00003.parquet    stage 1: filtered pairs of unit 3, with chain links (atomic)
    pairs/00003.json       stage 1 done-marker: the unit's stats, rejects, engine tuning (atomic, written last)
    finalize.lock          held by the one process running stages 2-3 (`finalize_lock`)
    dedup/00003.npz        stage 2 checkpoint: unit 3's dedup decisions and index keys (removed after dedup.json)
    dedup.json             stage 2: near-duplicate pairs across the corpus (decided in one process)
    data/00003.parquet     stage 3: the output rows of unit 3 (templified or pairs; atomic)
    rejects.jsonl          every skipped document with its reason
    manifest.json          counts and settings; written last, so it marks a complete job

Every file is written to a per-process temporary name (``<file>.tmp-<host>-<pid>``), fsynced
and `os.replace`d, so a process killed at any moment (SIGKILL included) leaves only complete
files or temporaries, and two processes on the same unit (a task rerun while the first still
runs) never mix their writes: each writes the whole unit, and one that finishes after the
other has marked the unit done drops its own. A rerun skips what is done and redoes the rest;
synthesis is deterministic per unit (rules, transformers; vLLM only when batch-invariant), so
the final output equals an uninterrupted run. Durability is per unit: choose `num_shards` so that one unit is an
amount of work you are willing to redo. Stages 2-3 run in whichever process first sees every
unit done (the last rank to finish), after it closed its synthesizer, with a pool of processes
(`JobConfig.num_proc`); they resume by unit too (docs/jobs.md, "Stages 2-3 at scale").

One file on purpose: the three stages share the layout and atomic-write helpers, and the
layout above is easier to check against the code when it all sits together.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

from .augment import (
    KEYWORDS_DIGEST,
    NEWER_SETTINGS,
    RULES,
    SYNTHESIZER_COMMIT,
    SYNTHESIZER_FILES,
    Augmenter,
    SynthesisConfig,
    device_type,
    engine_tuning,
    keywords_pin,
    locations,
    normalized_engine_kwargs,
    recorded_settings,
    synthesizer_pin,
    without_tuning,
)
from .backends.base import default_of
from .chaining import MARKERS_ONLY, REJECT_MARKERS_ONLY, ChainEntry, ChainStats
from .cli import MissingDependencyError, UsageError, check_output_dir, describe_changes
from .corpus import (
    SUPPORTED,
    CorpusConfig,
    Document,
    check_text_column,
    data_suffix,
    files_inside,
    folder_reads,
    is_compressed,
    is_damage,
    is_local_corpus,
    iter_shard,
    make_shards,
)
from .files import temp_name, write_atomic, write_json
from .filters import FILTER_OPTIONS, FilterConfig, NearDuplicates, filter_pairs
from .protocol import Pair

logger = logging.getLogger(__name__)

FORMAT = "hf_ipt.synthesis-job/1"


@dataclass
class JobConfig(CorpusConfig):
    """Where the corpus comes from (`CorpusConfig`; `num_shards` are the work units) and where results go."""

    output_dir: str = field(
        default="outputs/synthesis",
        metadata={"help": "Job folder (shared by all ranks): a new or empty folder, or this job's to resume; a "
                  "folder of other files (an augment output, a model) is refused."},
    )
    max_doc_chars: int = field(
        default=1_000_000, metadata={"help": "Documents longer than this many characters are rejected."}
    )
    num_proc: int | None = field(
        default=None,
        metadata={"help": "Processes for stages 2-3 (dedup's MinHash signatures, render) in the process that finishes "
                  "the job (default: every CPU it may use; fewer on small jobs). The output does not depend on it."},
    )

    # Where a job runs and with how many processes, not what it writes: neither in job.json nor the manifest.
    PLACEMENT = ("output_dir", "num_proc")

    def __post_init__(self) -> None:
        _refuse_bundled(self.corpus)
        super().__post_init__()
        if self.max_doc_chars < 1:
            raise ValueError(f"`max_doc_chars` must be >= 1, got {self.max_doc_chars} (JobConfig.max_doc_chars)")
        if self.num_proc is not None and (isinstance(self.num_proc, bool) or not isinstance(self.num_proc, int)
                                          or self.num_proc < 1):
            raise ValueError(f"`num_proc` must be an integer >= 1 or None (every CPU), got {self.num_proc!r} "
                             "(JobConfig.num_proc)")
        self.output_dir = check_output_dir(self.output_dir, "JobConfig.output_dir")


def _refuse_bundled(corpus: str | None) -> None:
    """Refuse a corpus name that only `hf-ipt augment` and `hf-ipt demo` know (``bbc-business``): read
    as a Hub dataset id, it failed with a misleading "read from the Hub" error. A job records its corpus
    as given, and the bundled files' path differs between installs, so a job takes the files."""
    from .augment_cli import BUNDLED_CORPORA, resolve_corpus

    if corpus not in BUNDLED_CORPORA:
        return
    try:
        files = f"--corpus {resolve_corpus(corpus)!r} --corpus_name {corpus}"
    except MissingDependencyError as err:
        files = f"its files as --corpus, once installed ({err})"
    raise UsageError(f"`corpus` {corpus!r} is a corpus bundled with `hf-ipt augment` and `hf-ipt demo`, not a "
                     f"dataset a job can read by name: run `hf-ipt augment --corpus {corpus}`, or give the job "
                     f"{files} (JobConfig.corpus)")


def world_from_env(environ: dict | None = None) -> tuple[int, int]:
    """`(rank, world_size)` from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate) or Slurm.

    Under Slurm: a job array's task is rank ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) /
    SLURM_ARRAY_TASK_STEP`` of ``SLURM_ARRAY_TASK_COUNT``; the tasks of one ``srun -n N`` step (``SLURM_STEP_NUM_TASKS``,
    which srun sets and a batch script does not) split that further by ``SLURM_PROCID``. Nothing
    set: a single process.
    """
    env = os.environ if environ is None else environ

    def number(name: str, default: int | None = None) -> int:
        try:
            return int(env[name]) if default is None or name in env else default
        except (KeyError, ValueError):
            found = f"{name}={env[name]!r} is set" if name in env else f"{name} is not set"
            raise UsageError(f"{found} in the environment: a whole number is needed, as torchrun, accelerate "
                             "launch and Slurm set it") from None

    if "WORLD_SIZE" in env:
        world = number("WORLD_SIZE")
        if "RANK" not in env and world > 1:
            raise UsageError(f"WORLD_SIZE={world} is set but RANK is not: every process would be rank 0 and the "
                             "other ranks' units would never be done; set RANK too (torchrun and accelerate "
                             "launch do), or unset WORLD_SIZE")
        rank = number("RANK", 0)
    else:
        rank, world = 0, 1
        if "SLURM_ARRAY_TASK_COUNT" in env:
            offset, step = number("SLURM_ARRAY_TASK_ID") - number("SLURM_ARRAY_TASK_MIN", 0), \
                number("SLURM_ARRAY_TASK_STEP", 1)  # `--array=0-15:2`: ids 0, 2, ..., 14 are ranks 0..7
            if step < 1 or offset % step:
                raise UsageError(f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']} is not SLURM_ARRAY_TASK_MIN + "
                                 f"a multiple of SLURM_ARRAY_TASK_STEP={step}: give the array as a range "
                                 "(--array=0-15 or 0-15:2), not a list of ids")
            rank, world = offset // step, number("SLURM_ARRAY_TASK_COUNT")
        tasks = number("SLURM_STEP_NUM_TASKS", 1)
        if tasks > 1:
            rank, world = rank * tasks + number("SLURM_PROCID"), world * tasks
        if world == 1 and number("RANK", 0) != 0:
            raise UsageError(f"RANK={env['RANK']} is set but WORLD_SIZE is not: every process would be a world of "
                             "one and do every unit; set WORLD_SIZE too (torchrun and accelerate launch do), or "
                             "unset RANK")
    if not 0 <= rank < world:
        raise UsageError(f"rank {rank} is outside a world of {world} processes; check RANK/WORLD_SIZE "
                         "or SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT/SLURM_PROCID")
    return rank, world


# ---------------------------------------------------------------- atomic files (`hf_ipt.files`)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _remove_temporaries(folder: str, stale_only: bool = True) -> None:
    """Remove temporaries (``*.tmp-<host>-<pid>``) in `folder`.

    `stale_only`: only those of dead processes on this host (another host's process cannot be
    checked; its temporaries never shadow results). Otherwise every one, from any host.
    """
    host = socket.gethostname()
    for temp in glob.glob(os.path.join(folder, "*.tmp-*")):
        if stale_only:
            owner, _, pid = temp.rpartition(".tmp-")[2].rpartition("-")
            if owner != host or not pid.isdigit() or _alive(int(pid)):
                continue
        with contextlib.suppress(FileNotFoundError):  # its writer renamed or removed it meanwhile
            os.remove(temp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


# ---------------------------------------------------------------- job setup


def job_units(job: JobConfig) -> list[dict]:
    """The job's work units: `corpus.make_shards` over the corpus files (`job_files`)."""
    return make_shards(job_files(job), job.num_shards)


def _corpus_glob(job: JobConfig) -> str:
    """A glob of the corpus folder's data to suggest: its most common suffix at the top (``*.parquet``,
    ``*.jsonl.gz``), or below (``**/*.jsonl``) when the top holds none; ``*.jsonl`` when neither does."""
    def suffixes(paths) -> Counter:
        return Counter(data_suffix(p) + (os.path.splitext(p)[1] if is_compressed(p) else "")
                       for p in paths if p.endswith(SUPPORTED) and os.path.isfile(p)
                       and not files_inside([p], job.output_dir))

    if top := suffixes(glob.glob(os.path.join(glob.escape(job.corpus), "*"))):
        return "*" + top.most_common(1)[0][0]
    below = suffixes(glob.glob(os.path.join(glob.escape(job.corpus), "**", "*"), recursive=True))
    return "**/*" + below.most_common(1)[0][0] if below else "*.jsonl"


def job_files(job: JobConfig) -> list[str]:
    """The corpus files, less the job's own outputs (a glob such as ``corpus/**/*.parquet`` with
    `output_dir` below ``corpus/`` matches them on a rerun), checked for `text_column`."""
    if os.path.isdir(job.corpus) and files_inside([job.output_dir], job.corpus) and \
            folder_reads(job.corpus, os.path.join(job.output_dir, "pairs", "00000.parquet")):
        # `datasets` would lay the folder out with the job's own files in it (their Parquet may even outnumber the
        # corpus files and make it read nothing else); a layout by split names (data/train-*) leaves them out
        raise UsageError(f"`output_dir` {job.output_dir!r} is inside the dataset folder `corpus` {job.corpus!r}, which "
                         "would read the job's own files as corpus: give an `output_dir` outside it, or the corpus as "
                         f"a glob (corpus='{job.corpus.rstrip('/')}/{_corpus_glob(job)}'), whose matches inside "
                         "`output_dir` are left out")
    files = job.listed_files()
    if is_local_corpus(job.corpus) and (ours := files_inside(files, job.output_dir)):
        logger.warning("hf_ipt: `corpus` %r matches %d file(s) inside `output_dir` %r, such as %r: they are "
                       "this job's outputs and are left out", job.corpus, len(ours), job.output_dir, ours[0])
        files = [f for f in files if f not in ours]
        if not files:
            raise UsageError(f"`corpus` {job.corpus!r} matches only files inside `output_dir` "
                             f"{job.output_dir!r}; point it at the raw corpus")
    check_text_column(files, job.text_column)
    return files


def job_spec(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig, units: list[dict]) -> dict:
    """Everything that determines the output (`job.json`); `output_dir` aside, so a job folder can move.

    Per-process placement is left out too: `device` keeps its type (``cuda:3`` is saved as
    ``cuda``), so ranks on different GPUs share one job. A `domain_keywords` file is pinned by its
    keywords too (`KEYWORDS_DIGEST`), not only by its path: an edited file is another job.
    """
    settings = {k: v for k, v in asdict(job).items() if k not in JobConfig.PLACEMENT}
    files = sorted({f for u in units for f in u["files"]})
    sizes = {f: os.path.getsize(f) for f in files if os.path.isfile(f)}
    synthesis_settings = {**asdict(synthesis), "device": device_type(synthesis.device)}
    for name, default in NEWER_SETTINGS.items():  # pinned when set; absent at their defaults (older jobs)
        if synthesis_settings[name] == default:
            del synthesis_settings[name]
    synthesis_settings.update(keywords_pin(synthesis.domain_keywords))  # absent without a file (older jobs)
    # a Hub synthesizer's commit or a local folder's files; absent for the rule miner, a sha revision (older jobs)
    synthesis_settings.update(synthesizer_pin(synthesis.synthesizer, synthesis.revision))
    return {"format": FORMAT, "job": settings, "synthesis": synthesis_settings, "filters": asdict(filters),
            "units": units, "file_sizes": sizes}


def prepare(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig) -> list[dict]:
    """Create or check `output_dir/job.json`; return the units.

    Other settings are refused once a unit is done. Before that, they replace `job.json` (with
    a warning): a job stopped before it finished a unit must not lock the folder to its settings.
    (`run_job` writes `job.json` only once the synthesizer has loaded, so that a mistake found as it
    loads, a wrong device or engine argument, is never pinned.)
    """
    return prepare_pinned(job, synthesis, filters)[0]


def prepare_pinned(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig) -> tuple[list[dict], dict]:
    """`prepare`, and the content of `job.json` as this process wrote or checked it (`check_pinned`
    compares the file with it before a unit is marked done)."""
    units, spec, changes = plan_job(job, synthesis, filters)
    pin_job(job, spec, changes)
    return units, spec


def pin_job(job: JobConfig, spec: dict, changes: str | None) -> None:
    """Write `spec` to `job.json` as `plan_job` found it must be: not at all when `changes` is `None` (it
    holds `spec`), as a new job's when it is ``""``, else over a job that finished no unit (with a warning
    naming the `changes`)."""
    if changes is None:
        return
    if changes:
        logger.warning("hf_ipt: %r held a job with other settings that finished no unit; it now holds this one "
                       "(changed: %s)", job.output_dir, changes)
    write_json(_spec_path(job), spec)  # ranks starting together write the same content


# What a job folder holds (the layout above), temporaries aside.
JOB_LAYOUT = frozenset({"job.json", "pairs", "data", "dedup", "dedup.json", "finalize.lock", "rejects.jsonl",
                        "manifest.json"})


def claim_job_dir(output_dir: str) -> None:
    """Refuse an existing, non-empty `output_dir` that is not a job folder (no `job.json`, and files
    outside `JOB_LAYOUT`): an `hf-ipt augment` output, a saved model, any other files, which the job
    would be written beside. A folder a run left before it pinned `job.json` (``pairs/``, ``data/``) is a job's;
    hidden files (``.gitkeep``) do not count."""
    from .augment_cli import augment_output, other_output
    from .models import few_names

    if not os.path.isdir(output_dir) or os.path.isfile(os.path.join(output_dir, "job.json")):
        return
    foreign = sorted(n for n in os.listdir(output_dir)  # hidden files (.gitkeep, .DS_Store) are no output
                     if n not in JOB_LAYOUT and ".tmp-" not in n and not n.startswith("."))
    if not foreign:
        return
    if earlier := augment_output(output_dir):
        held = f"the output of `hf-ipt augment` ({', '.join(earlier)})"
    elif found := other_output(output_dir, ignore=JOB_LAYOUT):
        held = f"{found[1]} ({found[0]})"
    else:
        held = f"files of no `hf-ipt synthesize` job ({few_names(foreign)})"
    raise UsageError(f"`output_dir` {output_dir!r} holds {held}, not an `hf-ipt synthesize` job: synthesize does "
                     "not write a job beside them; choose another --output_dir (a new or empty folder)")


def plan_job(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig) -> tuple[list[dict], dict, str | None]:
    """Check `output_dir/job.json` against these settings without writing it: the units, the spec this process
    runs (`job.json`'s own when it resumes) and what `pin_job` must write: `None` (nothing), ``""`` (a new
    `job.json`) or the changes from the settings of a job that finished no unit (they are replaced).

    Raises:
        `UsageError`: `job.json` holds other settings and units are done under them.
    """
    claim_job_dir(job.output_dir)
    units = job_units(job)
    spec = json.loads(json.dumps(job_spec(job, synthesis, filters, units)))  # tuples -> lists
    for sub in ("pairs", "data"):
        os.makedirs(os.path.join(job.output_dir, sub), exist_ok=True)
    path = _spec_path(job)
    if not os.path.exists(path):
        return units, spec, ""
    found = _read_spec(path)
    old = json.loads(json.dumps(found))  # normalized below for the comparison; `found` stays as written
    if isinstance(old.get("synthesis"), dict):  # jobs saved before the device index was left out
        old["synthesis"]["device"] = device_type(old["synthesis"].get("device"))
        if "engine_kwargs" in old["synthesis"]:  # saved as typed before engine_kwargs were normalized
            old["synthesis"]["engine_kwargs"] = normalized_engine_kwargs(old["synthesis"]["engine_kwargs"])
            if old["synthesis"]["engine_kwargs"] is None:
                del old["synthesis"]["engine_kwargs"]
        _adopt_keywords_digest(job, old["synthesis"], spec["synthesis"])
        if isinstance(spec.get("synthesis"), dict):
            _keep_synthesizer_commit(job, old["synthesis"], spec["synthesis"])
            _adopt_unpinned_folder(job, old["synthesis"], spec["synthesis"])
    _reset_ignored_options(old)
    (old_core, old_tuning), (core, tuning) = _split_tuning(old), _split_tuning(spec)
    changed = sorted(k for k in core if core[k] != old_core.get(k))
    if changed == ["units"] and _same_files(old["units"], units):
        # Same corpus and settings, units cut by an older `make_shards`: keep the job's own units.
        logger.warning("hf_ipt: %r was cut into units by an older hf_ipt; resuming with its %d units",
                       job.output_dir, len(old["units"]))
        units, changed = old["units"], []
    if changed == ["units"] and (commits := _pinned_commits(job, old["units"])):
        # An unpinned Hub corpus got new commits: the job goes on with the snapshot it started on
        # (its units' URLs name that commit), as a job must read one fixed corpus.
        logger.warning("hf_ipt: %s has new commits since the job in %r started; it goes on with commit %s "
                       "(to synthesize the new one, start a job in a new --output_dir)", job.corpus,
                       job.output_dir, ", ".join(sorted(commits)))
        units, changed = old["units"], []
    if changed:
        done = _done_units(job)
        if not done:
            return units, spec, "; ".join(_differences(old, spec))
        finished = "its output written (manifest.json)" if done[0].endswith("manifest.json") \
            else f"{len(done)} finished unit(s)"
        raise UsageError(
            f"{job.output_dir!r} holds a different job (changed: {'; '.join(_differences(old_core, core))}) with "
            f"{finished}; rerun with the same corpus and settings to resume it, or choose a new `output_dir`"
        )
    if (retuned := _differences(old_tuning, tuning)) and not os.path.exists(os.path.join(job.output_dir, "manifest.json")):
        logger.warning("hf_ipt: resuming the job in %r with other engine tuning (%s): the units done under the old "
                       "settings stay as they are, and units synthesized now may differ from them in a few tokens "
                       "(equivalent, not byte-identical: batching can change greedy decoding on a GPU). job.json "
                       "keeps the settings the job started with; each unit's marker, and manifest.json's "
                       "`engine_tuning`, record those it ran with", job.output_dir, "; ".join(retuned))
    return units, found, None


def _split_tuning(spec: dict) -> tuple[dict, dict]:
    """A `job.json` content less its engine tuning (`augment.without_tuning`: what a resumed job must match),
    and that tuning alone (``{"synthesis": {...}}``, `augment.engine_tuning`), which a resumed job may change."""
    if not isinstance(spec.get("synthesis"), dict):
        return spec, {}
    return {**spec, "synthesis": without_tuning(spec["synthesis"])}, {"synthesis": engine_tuning(spec["synthesis"])}


def _reset_ignored_options(spec: dict) -> None:
    """Options that older hf_ipt accepted and ignored, back at their defaults in a saved `spec`:
    an option of a filter that is off, `num_keywords` with keywords not ranked per window. They
    never changed the output, and are refused now (so the command that started such a job can
    only be rerun without them)."""
    filters, synthesis = spec.get("filters"), spec.get("synthesis")
    if isinstance(filters, dict):
        for switch, options in FILTER_OPTIONS.items():
            if filters.get(switch) is False:
                filters.update({name: default_of(FilterConfig, name) for name in options if name in filters})
    if isinstance(synthesis, dict) and synthesis.get("domain_keywords") != "window" and "num_keywords" in synthesis:
        synthesis["num_keywords"] = default_of(SynthesisConfig, "num_keywords")


def _adopt_keywords_digest(job: JobConfig, old: dict, new: dict) -> None:
    """A job started before keyword files were pinned by content has the path alone in its
    `job.json`: once a unit is done, it resumes under that `job.json` (the file's keywords then
    were never recorded, so they cannot be checked), with a warning; before, this run's
    `job.json` replaces it. `old` is the normalized copy of its synthesis settings."""
    if KEYWORDS_DIGEST in old or KEYWORDS_DIGEST not in new or old.get("domain_keywords") != new["domain_keywords"] \
            or not _done_units(job):
        return
    old[KEYWORDS_DIGEST] = new[KEYWORDS_DIGEST]
    if old == new:  # else the job is refused or replaced for its other settings: no word about this
        logger.warning("hf_ipt: the job in %r was started by an older hf_ipt that pinned the path of "
                       "`domain_keywords` file %r, not its keywords: they cannot be checked, so keep the file as it "
                       "was until the job completes", job.output_dir, new["domain_keywords"])


def _keep_synthesizer_commit(job: JobConfig, old: dict, new: dict) -> None:
    """One job, one model: once a unit is done, a job on a Hub synthesizer goes on with the commit
    its `job.json` pins (`run_job` loads that one), though the repo has new commits or cannot be
    looked up now; one started before commits were pinned goes on unpinned, as it ran. `new` (this
    run's spec) takes the pin of `old`; before any unit is done, this run's commit stands."""
    pinned, now = old.get(SYNTHESIZER_COMMIT), new.get(SYNTHESIZER_COMMIT)
    if pinned == now or any(old.get(k) != new.get(k) for k in ("synthesizer", "revision")) or not _done_units(job):
        return
    if pinned is None:
        del new[SYNTHESIZER_COMMIT]
        return
    new[SYNTHESIZER_COMMIT] = pinned
    if now is not None:
        logger.warning("hf_ipt: synthesizer %s has new commits since the job in %r started; it goes on with commit %s "
                       "(to synthesize with the new one, start a job in a new --output_dir)", new["synthesizer"],
                       job.output_dir, pinned)


def _adopt_unpinned_folder(job: JobConfig, old: dict, new: dict) -> None:
    """A job on a local synthesizer folder started before folders were pinned by their files
    (`SYNTHESIZER_FILES`) resumes unpinned, as it ran, once a unit is done."""
    if SYNTHESIZER_FILES not in old and SYNTHESIZER_FILES in new and _done_units(job):
        del new[SYNTHESIZER_FILES]


def _at_pinned_commit(synthesis: SynthesisConfig, pinned: dict) -> SynthesisConfig:
    """`synthesis` loading its model at the commit `job.json` pins, if it pins one."""
    commit = pinned.get("synthesis", {}).get(SYNTHESIZER_COMMIT)
    return synthesis if commit is None else replace(synthesis, revision=commit)


def _read_spec(path: str) -> dict:
    """`job.json`; a file that is not an hf_ipt job's stops the run rather than be overwritten."""
    try:
        found = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        found = error
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise UsageError(f"{path!r} is not the job.json of an hf_ipt synthesis job "
                         f"({found if isinstance(found, Exception) else 'no format ' + repr(FORMAT)}): "
                         "choose another `output_dir`, or remove the file if the folder is yours to reuse")
    return found


def spec_id(spec: dict) -> str:
    """A digest of a `job.json` content: done-markers record the one their unit was made under."""
    import hashlib

    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _spec_path(job: JobConfig) -> str:
    return os.path.join(job.output_dir, "job.json")


def _done_units(job: JobConfig) -> list[str]:
    """The done-markers in `pairs/` (of any units: an older job may have been cut into other ones);
    none, but a `manifest.json`: that one (a finished job whose `pairs/` was deleted to save space
    pins its settings as its markers did)."""
    markers = glob.glob(os.path.join(job.output_dir, "pairs", "*.json"))
    manifest = os.path.join(job.output_dir, "manifest.json")
    return markers or ([manifest] if os.path.exists(manifest) else [])


def check_pinned(job: JobConfig, pinned: dict) -> None:
    """Raise a `UsageError` when `job.json` no longer holds `pinned`, the spec this process runs: a
    run with other settings took the folder before any unit was done (`prepare`), and this
    process's units must not be marked done under settings they were not made with."""
    current = _read_spec(_spec_path(job))
    if current != pinned:
        raise UsageError(
            f"{job.output_dir!r} was taken by a run with other settings while this one ran (changed: "
            f"{'; '.join(_differences(pinned, current))}); this process stops without marking its unit done. "
            "Rerun with the settings now in job.json, or choose a new `output_dir`"
        )


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two job specs: ``synthesis.rounds 2 -> 3``, units and file sizes summed up."""
    special = ("units", "file_sizes")
    out = describe_changes(_without_named_pins({k: v for k, v in old.items() if k not in special}),
                           _without_named_pins({k: v for k, v in new.items() if k not in special}))
    out += _keywords_changed(old.get("synthesis"), new.get("synthesis"))
    out += _synthesizer_changed(old.get("synthesis"), new.get("synthesis"))
    before, after = old.get("file_sizes") or {}, new.get("file_sizes") or {}
    if before != after and _same_files_renamed(before, after):
        return [*out, (f"corpus files: the same files, named another way (the job holds {next(iter(before))!r}): "
                       f"give `corpus` as the job was started ({old.get('job', {}).get('corpus')!r}), from the folder "
                       "it was started in")]
    units_before, units_after = old.get("units") or [], new.get("units") or []
    if units_before != units_after:
        out.append(f"units ({len(units_before)} -> {len(units_after)}: corpus files or `num_shards`)")
    changed = sorted(f for f in set(before) | set(after) if before.get(f) != after.get(f))
    if changed:
        out.append(f"file_sizes of {len(changed)} corpus file(s), e.g. {changed[0]!r}")
        if (found := next(iter(before), None)) is not None and "://" not in found and not os.path.isabs(found):
            out.append(f"the job's corpus files are relative ({found!r}): they are read from the folder a command "
                       "runs in, the one the job was started in")
    return out


def _same_files_renamed(before: dict, after: dict) -> bool:
    """Whether two `file_sizes` pins name the same local files (as resolved from here) under other spellings:
    a relative glob given again as an absolute one."""
    def resolved(sizes: dict) -> dict:
        return {os.path.realpath(f): size for f, size in sizes.items() if "://" not in f}

    return bool(before) and len(resolved(before)) == len(before) and resolved(before) == resolved(after)


def _without_named_pins(spec: dict) -> dict:
    """`spec` less its keywords digest and synthesizer files (`_keywords_changed` and `_synthesizer_changed`
    name those changes by the file)."""
    named = (KEYWORDS_DIGEST, SYNTHESIZER_FILES)
    if not isinstance(spec.get("synthesis"), dict) or not set(named) & set(spec["synthesis"]):
        return spec
    return {**spec, "synthesis": {k: v for k, v in spec["synthesis"].items() if k not in named}}


def _synthesizer_changed(old: dict | None, new: dict | None) -> list[str]:
    """The files of a local synthesizer folder changed (a model trained further and saved there), named."""
    if not (isinstance(old, dict) and isinstance(new, dict)) or old.get("synthesizer") != new.get("synthesizer"):
        return []
    before, after = old.get(SYNTHESIZER_FILES) or {}, new.get(SYNTHESIZER_FILES) or {}
    if before == after:
        return []
    if not before:  # a job.json of an older hf_ipt: nothing to compare with
        return [(f"synthesis.synthesizer: folder {new['synthesizer']!r} is now pinned by its files "
                 f"({SYNTHESIZER_FILES}; a job started by an hf_ipt before 0.3.0.dev4 held its path alone)")]
    from .models import few_names

    files = sorted(f for f in set(before) | set(after) if before.get(f) != after.get(f))
    return [(f"synthesis.synthesizer: the model in folder {new['synthesizer']!r} changed since the job started "
             f"({few_names(files)} differ; a job's units come from one model)")]


def _keywords_changed(old: dict | None, new: dict | None) -> list[str]:
    """An edit of the keyword file, named by the file (a change of path is `describe_changes`')."""
    if not (isinstance(old, dict) and isinstance(new, dict)) or old.get("domain_keywords") != new.get("domain_keywords"):
        return []
    before, after = old.get(KEYWORDS_DIGEST), new.get(KEYWORDS_DIGEST)
    if before == after:
        return []
    if before is None or after is None:
        return [f"synthesis.{KEYWORDS_DIGEST} {before!r} -> {after!r}"]
    edit = (f"synthesis.domain_keywords: the keywords in file {new['domain_keywords']!r} were edited (sha256 "
            f"{before[:12]} -> {after[:12]}); restore the file as it was to resume")
    return [edit]


def _pinned_commits(job: JobConfig, units: list[dict]) -> set[str]:
    """The commits that the units of a Hub corpus on a branch or tag were resolved to
    (``hf://...@<sha>/``); empty when the corpus is local, pinned to a commit sha, or a file
    has no commit in its URL."""
    if job.pinned:
        return set()
    files = [f for u in units for f in u["files"]]
    commits = {m.group(1) for f in files if (m := re.match(r"hf://datasets/[^@]+@([0-9a-f]{40})/", f))}
    return commits if files and all(re.match(r"hf://datasets/[^@]+@[0-9a-f]{40}/", f) for f in files) else set()


def _same_files(old: list[dict], new: list[dict]) -> bool:
    return sorted({f for u in old for f in u["files"]}) == sorted({f for u in new for f in u["files"]})


def unit_name(index: int) -> str:
    return f"{index:05d}"


def _path(job: JobConfig, stage: str, index: int, suffix: str) -> str:
    return os.path.join(job.output_dir, stage, unit_name(index) + suffix)


def unit_done(job: JobConfig, index: int, made_under: str | None = None) -> bool:
    """Whether unit `index` has its done-marker; with `made_under` (the `spec_id` of the `job.json`
    content this process runs), one made under that content (markers written before they
    recorded it count as such)."""
    if made_under is None:
        return os.path.exists(_path(job, "pairs", index, ".json"))
    marker = _marker(job, index)
    return bool(marker) and marker.get("job_spec", made_under) == made_under


def _parquet(path: str):
    """`pyarrow.parquet.ParquetFile` of `path`; `None` when it is missing or damaged (`corpus.is_damage`).
    An error of the system (EIO, EMFILE, a stale NFS handle) or of memory is raised: a passing one must
    not make a finished unit or output file count as lost, to be synthesized or written again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as error:
        if is_damage(error):
            return None
        raise


def parquet_rows(path: str) -> int | None:
    """The row count in a Parquet file's footer; `None` when it is missing or unreadable."""
    parquet = _parquet(path)
    return None if parquet is None else parquet.metadata.num_rows


def damaged_output(paths: list[str], rows: int | None) -> str | None:
    """What is wrong with output files `paths` that should hold `rows` rows in all (`None`: not
    counted): a file missing or unreadable, or another total; `None` when nothing is."""
    counts = []
    for path in paths:
        if (count := parquet_rows(path)) is None:
            return f"{path} is missing or not a readable Parquet file"
        counts.append(count)
    if rows is not None and sum(counts) != rows:
        return f"its Parquet files hold {sum(counts)} rows, its record says {rows}"
    return None


def _marker(job: JobConfig, index: int) -> dict | None:
    """Unit `index`'s done-marker; `None` when there is none, ``{}`` when it is unreadable."""
    try:
        return read_json(_path(job, "pairs", index, ".json"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _pairs_made(job: JobConfig, index: int) -> tuple[int, str | None] | None:
    """Rows and `spec_id` (`None` in units of older versions) of unit `index`'s pairs Parquet;
    `None` when it is missing or unreadable."""
    parquet = _parquet(_path(job, "pairs", index, ".parquet"))
    if parquet is None:
        return None
    spec = (parquet.schema_arrow.metadata or {}).get(SPEC_KEY)
    return parquet.metadata.num_rows, None if spec is None else spec.decode()


def _redo_damaged(job: JobConfig, num_units: int, pinned: dict | None = None) -> list[int]:
    """Unmark, so that they are synthesized again, the finished units whose pairs Parquet is
    missing, unreadable or holds another row count than their marker (a file deleted or cut short
    by hand, a disk that lost it) or, with `pinned`, whose marker or Parquet were made under other
    settings (a run with other settings wrote them while this one took the folder). What stages
    2-3 derived from them goes too. Returns the unmarked units."""
    ours = None if pinned is None else spec_id(pinned)
    damaged = []
    for index in range(num_units):
        marker = _marker(job, index)
        if marker is None:
            continue
        made = _pairs_made(job, index)
        specs = {marker.get("job_spec"), None if made is None else made[1]} - {None}
        if made is None or made[0] != marker.get("rows") or (ours is not None and specs - {ours}):
            damaged.append(index)
    if not damaged:
        return []
    logger.warning("hf_ipt: %d finished unit(s) of %r lost their pairs Parquet, hold another row count than "
                   "their marker, or were made under other settings, such as unit %s: they are synthesized again",
                   len(damaged), job.output_dir, unit_name(damaged[0]))
    # What is derived from every unit's pairs goes first: killed before the markers, a rerun finds the
    # same damaged units; the other way round, it redid them and kept the old units' dedup decisions.
    _drop_derived(job)
    for index in damaged:
        with contextlib.suppress(FileNotFoundError):
            os.remove(_path(job, "pairs", index, ".json"))
    return damaged


def _derived_files(job: JobConfig) -> list[str]:
    """What stages 2-3 derived from every unit's pairs: the manifest, the dedup decisions and checkpoints,
    the data files."""
    return [path for path in [os.path.join(job.output_dir, name) for name in ("manifest.json", "dedup.json")]
            if os.path.exists(path)] + sorted(glob.glob(os.path.join(job.output_dir, "dedup", "*.npz"))) + \
        sorted(glob.glob(os.path.join(job.output_dir, "data", "*.parquet")))


def _drop_derived(job: JobConfig) -> None:
    """Remove `_derived_files`: stages 2-3 make them again from the units' pairs as they are now."""
    for path in _derived_files(job):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _drop_stale_derived(job: JobConfig, num_units: int, made_under: str) -> None:
    """Units to synthesize beside stages 2-3's output (a `pairs/` folder deleted to make the job again, part
    of it lost): that output was derived from pairs that are gone, and its dedup decisions would be applied
    to the new ones. Removed, with a warning; stages 2-3 run again once every unit is done."""
    if not (derived := _derived_files(job)):
        return
    missing = [i for i in range(num_units) if not unit_done(job, i, made_under)]
    if missing:
        logger.warning("hf_ipt: %d unit(s) of %r are to be synthesized (such as %s) beside the output of stages 2-3 "
                       "(%s, ...), derived from pairs that are gone: it is removed and made again once every unit is "
                       "done", len(missing), job.output_dir, unit_name(missing[0]), os.path.basename(derived[0]))
        _drop_derived(job)


def _finished(job: JobConfig, num_units: int) -> dict | None:
    """The manifest of a finished job whose data files are all there, with the rows it counts;
    `None` (and the manifest removed, for stage 3 to write what is missing again) otherwise.

    Raises:
        `UsageError`: the output is incomplete and units' pairs are gone (`pairs/` deleted to save space):
            writing it again would synthesize those units again and replace every data file, which is
            the user's call (remove ``manifest.json``), not a rerun's.
    """
    path = os.path.join(job.output_dir, "manifest.json")
    try:
        manifest = read_json(path)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = {}
    files, rows = manifest.get("data_files"), manifest.get("rows")
    problem = damaged_output([os.path.join(job.output_dir, f) for f in files], rows) \
        if isinstance(files, list) and rows is not None else "manifest.json is unreadable"
    if problem is None:
        return manifest
    if missing := [i for i in range(num_units) if not unit_done(job, i)]:
        raise UsageError(
            f"the output of the finished job in {job.output_dir!r} is incomplete ({problem}) and the pairs of "
            f"{len(missing)} of its {num_units} units (such as {unit_name(missing[0])}) are gone: writing it again "
            "means synthesizing those units again, and every data file is then written anew. Restore what was lost; "
            f"or, to make the job again, remove {path!r} and rerun; or use the data files as they are")
    logger.warning("hf_ipt: the output of the finished job in %r is incomplete (a data file missing or damaged): "
                   "it is written again", job.output_dir)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return None


# ---------------------------------------------------------------- stage 1: synthesis


SPEC_KEY = b"hf_ipt_job_spec"  # Parquet metadata key: the `spec_id` a unit's pairs were made under


def _pairs_schema(spec: str | None = None):
    import pyarrow as pa

    pair = pa.struct([("question", pa.string()), ("answer", pa.string()), ("task", pa.string())])
    return pa.schema([
        ("id", pa.string()), ("context", pa.string()), ("pairs", pa.list_(pair)), ("round", pa.int32()),
        ("shots", pa.list_(pa.string())), ("shot_rows", pa.list_(pa.int64())),  # rows of this unit
        ("truncated", pa.bool_()), ("tokens", pa.int64()),
        ("parent_row", pa.int64()),  # the chain link synthesis made (None: a chain starts here)
    ], metadata=None if spec is None else {SPEC_KEY: spec.encode()})


@dataclass
class UnitStats:
    """What happened to one unit; saved as its done-marker and summed into the manifest."""

    docs: int = 0
    rows: int = 0
    pairs_synthesized: int = 0
    pairs: int = 0
    tokens: int = 0
    rejects: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    chain: ChainStats = field(default_factory=ChainStats)
    rejected: list[dict] = field(default_factory=list)  # {"id", "reason", "detail"} per skipped document

    def reject(self, doc_id: str, reason: str, detail: str = "") -> None:
        self.rejects[reason] += 1
        self.rejected.append({"id": doc_id, "reason": reason, "detail": detail})


def _accepted(docs: Iterator[Document], max_chars: int, stats: UnitStats) -> Iterator[Document]:
    for doc in docs:
        stats.docs += 1
        if doc.reject is not None:
            stats.reject(doc.id, doc.reject)
        elif len(doc.text) > max_chars:
            stats.reject(doc.id, "too long", f"{len(doc.text)} characters > max_doc_chars={max_chars}")
        else:
            yield doc


def entry_rows(entries: list[ChainEntry], ids: list[str], first_row: int, filters: FilterConfig,
               stats: UnitStats) -> list[dict]:
    """Stage-1 rows of one window: pairs filtered, failed prompts moved to the rejects."""
    rows, row_of = [], {}
    for e in entries:
        if e.error is not None:  # a prompt the engine rejected or failed on: it has no pairs, no followers
            stats.reject(ids[e.id], *((REJECT_MARKERS_ONLY,) if e.error == MARKERS_ONLY else ("engine error", e.error)))
            continue
        tasks = e.tasks or [""] * len(e.pairs)
        kept, removed = filter_pairs(e.text, [(p.question, p.answer, t) for p, t in zip(e.pairs, tasks)], filters)
        stats.pairs_synthesized += len(e.pairs)
        stats.pairs += len(kept)
        stats.filtered.update(removed)
        stats.tokens += len(e.prompt_ids) or len(e.text.split())  # rules: no tokenizer, words
        row_of[e.id] = first_row + len(rows)
        rows.append({
            "id": ids[e.id], "context": e.text, "round": e.round, "truncated": e.truncated,
            "pairs": [{"question": q, "answer": a, "task": t} for q, a, t in kept],
            "shots": [ids[s] for s in e.shots], "shot_rows": [row_of[s] for s in e.shots],
            "tokens": len(e.prompt_ids), "parent_row": None if e.parent is None else row_of[e.parent],
        })
    return rows


def synthesize_unit(job: JobConfig, index: int, shard: dict, augment: Augmenter, filters: FilterConfig,
                    progress: Progress | None = None, rank: int = 0, pinned: dict | None = None) -> UnitStats:
    """Synthesize one unit into ``pairs/<unit>.parquet``, then write its done-marker.

    Safe to run in two processes at once (e.g. a task rerun while the first still runs): each
    writes its own temporary, and one that finishes after the other's marker drops its output,
    so the Parquet and the marker of a unit come from the same run, unless both finish at the
    same moment (no lock across nodes; vLLM's greedy outputs may differ between two runs; see
    docs/jobs.md). With `pinned` (the `job.json` this process runs), a unit is not marked done
    once another run has replaced `job.json` (`check_pinned`).
    """
    import itertools

    import pyarrow as pa
    import pyarrow.parquet as pq

    made_under = None if pinned is None else spec_id(pinned)
    stats, schema = UnitStats(), _pairs_schema(made_under)
    augment.stats = stats.chain
    docs = _accepted(iter_shard(shard, job.text_column), job.max_doc_chars, stats)

    def write(temp: str) -> None:
        with pq.ParquetWriter(temp, schema) as writer:
            while window := list(itertools.islice(docs, augment.config.window_size)):
                entries = augment.synthesize([d.text for d in window])
                rows = entry_rows(entries, [d.id for d in window], stats.rows, filters, stats)
                stats.rows += len(rows)
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                if progress:
                    progress.update(len(window), sum(r["tokens"] or len(r["context"].split()) for r in rows),
                                    sum(len(r["pairs"]) for r in rows))

    def finished_elsewhere() -> bool:
        if pinned is not None:
            check_pinned(job, pinned)
        return unit_done(job, index, made_under)

    # A duplicate run that finished first keeps its Parquet and marker: this run's output is dropped.
    if not write_atomic(_path(job, "pairs", index, ".parquet"), write, unless=finished_elsewhere):
        return stats
    marker = {**vars(stats), "rejects": dict(stats.rejects), "filtered": dict(stats.filtered),
              "chain": asdict(stats.chain), "unit": index, "shard": shard, "rank": rank}
    if augment.config.synthesizer != RULES:  # a resumed job may change it: the manifest says which units ran how
        marker["engine_tuning"] = engine_tuning(asdict(augment.config))
    if pinned is not None:
        marker["job_spec"] = made_under
    write_json(_path(job, "pairs", index, ".json"), marker)
    if pinned is not None:
        try:  # a run with other settings took the folder meanwhile: it redoes this unit (`_redo_damaged`)
            check_pinned(job, pinned)
        except UsageError:
            if _marker(job, index).get("job_spec") == made_under:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(_path(job, "pairs", index, ".json"))
            raise
    return stats


class Progress:
    """A tqdm bar over this rank's units with docs/s, tokens/s, pairs/doc in the postfix."""

    def __init__(self, units: int, rank: int, token_unit: str, done: int = 0) -> None:
        """`units` of this rank in all, `done` of them before this run (a resumed job: the bar
        starts there, and its rate and ETA count this run's units only)."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=units, initial=done, desc=f"synthesize rank {rank}", unit="unit")
        self.token_unit, self.start = token_unit, time.monotonic()
        self.docs = self.tokens = self.pairs = 0

    def update(self, docs: int, tokens: int, pairs: int) -> None:
        self.docs, self.tokens, self.pairs = self.docs + docs, self.tokens + tokens, self.pairs + pairs
        seconds = max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(
            f"{self.docs / seconds:.1f} docs/s, {self.tokens / seconds:.0f} {self.token_unit}/s, "
            f"{self.pairs / max(self.docs, 1):.2f} pairs/doc"
        )


# ---------------------------------------------------------------- stages 2-3: dedup, render, manifest


def stage_bar(progress: bool, total: int, desc: str, unit: str, done: int = 0):
    """A tqdm bar of stage 2 or 3 over `total` pairs or documents (counted by the done-markers), `done` of
    them before this run; shown as stage 1's are (`run_job(progress=...)`), a no-op bar otherwise."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit=unit, unit_scale=True, disable=not progress)


MIN_PAIRS_PER_PROCESS = 20_000  # dedup: ~5 s of one core; a process costs ~2 s to start (it imports hf_ipt)
MIN_DOCS_PER_PROCESS = 20_000  # render: ~5 s of one core


def available_cpus() -> int:
    """The CPUs this process may use: those it may run on (its affinity: Slurm's core binding, `taskset`,
    `docker --cpuset-cpus`), fewer under a CPU quota (cgroup v2 `cpu.max`: `docker --cpus`, a Kubernetes
    limit), else the machine's."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            quota = cpu_quota(f.read())
    except OSError:  # cgroup v1 or none
        quota = None
    return min(cpus, quota) if quota else cpus


def cpu_quota(cpu_max: str) -> int | None:
    """The CPUs a cgroup v2 ``cpu.max`` (``"400000 100000"``: quota and period in µs) allows, rounded up;
    `None` without a quota (``"max 100000"``) or when it cannot be read."""
    fields = cpu_max.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields) or int(fields[1]) == 0:
        return None
    return max(1, -(-int(fields[0]) // int(fields[1])))


def stage_processes(num_proc: int | None, units: int, work: int, per_process: int) -> int:
    """Processes for a pass of stage 2 or 3 over `units` units holding `work` pairs or documents: `num_proc`
    (default `available_cpus`), no more than the units, and one per `per_process` of work at most (1: no pool)."""
    return max(1, min(num_proc or available_cpus(), units, work // per_process))


def _pool_process_start(parent: int) -> None:
    """In each process of a stage's pool: Ctrl-C is left to the process that started the pool (which stops
    it), and the process ends once that one is gone (a SIGKILL gives it no chance to stop its pool, whose
    processes would otherwise wait for work forever)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="hf_ipt-parent-watch").start()


@contextlib.contextmanager
def process_pool(processes: int) -> Iterator:
    """A pool of `processes` fresh (spawned) processes, `None` for 1 (the work runs here): spawned, not forked,
    since the process may hold threads and a CUDA context (its synthesizer's, closed before stages 2-3)."""
    if processes <= 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pool_process_start, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        # An error or Ctrl-C here: the pool's processes are killed, not waited for (they would finish their
        # units and one more, minutes at scale, whose results are dropped; a second Ctrl-C during that wait
        # left the process hung). What they were writing is a temporary, removed on the rerun.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def in_order(pool, function, calls: list[tuple], ahead: int) -> Iterator:
    """`function(*args)` for each `args` of `calls`, results in their order: in `pool`'s processes with at most
    `ahead` calls submitted beyond the one awaited (the main process holds at most ``ahead + 1`` results), or
    here."""
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    if pool is None:
        yield from (function(*args) for args in calls)
        return
    pending: deque = deque()
    try:
        for args in calls:
            pending.append(pool.submit(function, *args))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool as error:
        raise RuntimeError(f"a process of the pool running {function.__name__} ended abruptly: killed (out of memory, "
                           "a signal), or it failed as it started (its error is printed above); rerun the same command "
                           "to resume, with a lower --num_proc if memory ran out") from error


def read_pairs(path: str, columns: list[str] | None = None):
    """A unit's pairs Parquet, as a table. One whose pages cannot be read (its footer could: a unit is
    checked by its footer as a job starts) is unmarked, so that the rerun that the error names synthesizes
    it again, and stages 2-3 then make their output anew."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as error:
        if not is_damage(error):  # a missing file, the system's error (EIO, EMFILE, ESTALE), memory: not the unit's
            raise
        with contextlib.suppress(FileNotFoundError):
            os.remove(path.removesuffix(".parquet") + ".json")  # its done-marker
        index = int(os.path.basename(path).removesuffix(".parquet"))
        raise UsageError(f"the pairs of unit {os.path.basename(path)} cannot be read ({path}: "
                         f"{' '.join(str(error).split())}): the unit is marked undone; rerun the job to synthesize it "
                         f"again (with several ranks, the one it belongs to: RANK = {index} mod WORLD_SIZE)") from None


def unit_band_keys(path: str, filters: FilterConfig) -> tuple:
    """Stage 2's costly half for one unit's pairs Parquet (in any process): the `NearDuplicates.band_keys` of
    each pair with enough words to be compared, a ``(pairs, bands)`` array; their ``[row, pair]`` positions
    in the unit; the unit's count of pairs."""
    import numpy as np

    detector, positions, keys, count = NearDuplicates(filters), [], [], 0
    for row, pairs in enumerate(read_pairs(path, columns=["pairs"]).column("pairs").to_pylist()):
        for k, pair in enumerate(pairs):
            if (found := detector.band_keys(f"{pair['question']}\n{pair['answer']}")) is not None:
                positions.append((row, k))
                keys.append(found)
        count += len(pairs)
    return (np.array(positions, dtype=np.int64).reshape(-1, 2),
            np.array(keys, dtype=np.uint64).reshape(-1, len(detector.ranges)), count)


def _dedup_path(job: JobConfig, index: int) -> str:
    return _path(job, "dedup", index, ".npz")


def _save_dedup_unit(job: JobConfig, index: int, keys, duplicates) -> None:
    """Stage 2's checkpoint after unit `index` (``dedup/<unit>.npz``): the band keys its pairs added to the
    index and its duplicates' ``[row, pair]`` positions."""
    import numpy as np

    def write(temp: str) -> None:
        with open(temp, "wb") as f:
            np.savez(f, keys=keys, duplicates=duplicates)

    os.makedirs(os.path.join(job.output_dir, "dedup"), exist_ok=True)
    write_atomic(_dedup_path(job, index), write)


def _restore_dedup(job: JobConfig, detector: NearDuplicates, units: int) -> tuple[dict, int]:
    """What an earlier run of stage 2 finished: the duplicates of its first units, whose keys go into
    `detector`'s index, and how many units that is (a run resumes after the last saved in a row)."""
    import zipfile

    import numpy as np

    found, sizes = {}, []
    for index in range(units):  # the decisions, and the size of each unit's keys (read from the header only)
        try:
            with np.load(_dedup_path(job, index)) as saved:
                duplicates = saved["duplicates"]
                with saved.zip.open("keys.npy") as f:
                    sizes.append(_npy_length(f))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # not saved, or unreadable
            break
        if len(duplicates):
            found[unit_name(index)] = duplicates.tolist()
    if not sizes:
        return found, 0
    # into one array, sorted in place, that the index adopts: about the index's size at the peak, not 4 times
    restored, at = np.empty(sum(sizes), dtype=np.uint64), 0
    for index, size in enumerate(sizes):
        with np.load(_dedup_path(job, index)) as saved:
            restored[at:at + size] = saved["keys"]
        at += size
    detector.keys.merge(restored)
    detector.count += len(restored) // len(detector.ranges)
    logger.warning("hf_ipt: dedup resumes after unit %s (%d of %d units deduplicated by an earlier run)",
                   unit_name(len(sizes) - 1), len(sizes), units)
    return found, len(sizes)


def _npy_length(f) -> int:
    """The number of values of the ``.npy`` array whose file `f` is open at its start, from its header."""
    import math

    from numpy.lib import format as npy

    version = npy.read_magic(f)
    shape = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(f)[0]
    return math.prod(shape)


def find_duplicates(job: JobConfig, filters: FilterConfig, stats: list[dict],
                    progress: bool = False, num_proc: int | None = None) -> dict[str, list[list[int]]]:
    """Near-duplicate pairs over the whole corpus in unit/row/pair order: ``{unit: [[row, pair], ...]}``.

    `stats` are the units' done-markers (their `pairs` counts size the progress bar). The MinHash signatures
    of the units are computed in `num_proc` processes (`stage_processes`), the decisions taken here in corpus
    order, so the result does not depend on them. Each unit's decisions are saved (``dedup/<unit>.npz``) as
    they are taken: a run killed meanwhile resumes after the last unit saved."""
    detector = NearDuplicates(filters)
    found, start = _restore_dedup(job, detector, len(stats))
    counts = [s["pairs"] for s in stats]
    processes = stage_processes(num_proc, len(stats) - start, sum(counts[start:]), MIN_PAIRS_PER_PROCESS)
    calls = [(_path(job, "pairs", index, ".parquet"), filters) for index in range(start, len(stats))]
    with stage_bar(progress, sum(counts), "dedup pairs", "pair", sum(counts[:start])) as bar, \
            process_pool(processes) as pool:
        for index, (positions, keys, count) in enumerate(in_order(pool, unit_band_keys, calls, processes), start):
            seen = detector.seen_keys(keys)
            if seen.any():
                found[unit_name(index)] = positions[seen].tolist()
            _save_dedup_unit(job, index, keys[~seen].ravel(), positions[seen])
            bar.update(count)
            bar.set_postfix_str(f"unit {index + 1}/{len(stats)}, {sum(map(len, found.values()))} duplicates",
                                refresh=False)
    return found


def _entry(row_index: int, row: dict, drop: set) -> ChainEntry:
    """Rebuild the `ChainEntry` that `Augmenter.render` needs from a stage-1 row."""
    pairs = [p for k, p in enumerate(row["pairs"]) if (row_index, k) not in drop]
    shots = tuple(row["shot_rows"])
    # The link `chaining.chain` made, on the pairs as parsed (filters and dedup run later, and
    # an entry they empty still held its place in the prompts after it). Units written before
    # the column existed linked every entry to its last shot.
    parent = row["parent_row"] if "parent_row" in row else (shots[-1] if shots else None)
    return ChainEntry(row_index, row["round"], 0, row["context"], row["context"], shots=shots,
                      parent=parent, truncated=row["truncated"],
                      pairs=[Pair(p["question"], p["answer"]) for p in pairs], tasks=[p["task"] for p in pairs])


def render_unit(job: JobConfig, synthesis: SynthesisConfig, index: int, duplicates: list[list[int]]) -> None:
    """Write ``data/<unit>.parquet``: the unit's rows in the requested output, duplicates removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .augment import features

    rows = read_pairs(_path(job, "pairs", index, ".parquet")).to_pylist()
    drop = {(r, k) for r, k in duplicates}
    entries = [_entry(i, row, drop) for i, row in enumerate(rows)]
    columns = Augmenter(synthesis, corpus_name=job.corpus_name).render(entries, [r["id"] for r in rows])
    table = pa.Table.from_pydict(columns, schema=features(synthesis.output).arrow_schema)

    def write(temp: str) -> None:
        # no row group at all for an empty unit: `datasets` reads a 0-row group as batch size 0 and fails
        with pq.ParquetWriter(temp, table.schema) as writer:
            if table.num_rows:
                writer.write_table(table)

    write_atomic(_path(job, "data", index, ".parquet"), write)


def render_units(job: JobConfig, synthesis: SynthesisConfig, stats: list[dict], duplicates: dict,
                 progress: bool = False, num_proc: int | None = None) -> None:
    """Stage 3: `render_unit` for every unit whose ``data/`` file is missing, in `num_proc` processes
    (`stage_processes`), with a bar over the documents (`stats`: the units' done-markers) that starts at
    those of the units an earlier run rendered."""
    todo = [i for i in range(len(stats)) if parquet_rows(_path(job, "data", i, ".parquet")) is None]
    rows = [s["rows"] for s in stats]
    processes = stage_processes(num_proc, len(todo), sum(rows[i] for i in todo), MIN_DOCS_PER_PROCESS)
    calls = [(job, synthesis, index, duplicates.get(unit_name(index), [])) for index in todo]
    with stage_bar(progress, sum(rows), "render docs", "doc", sum(rows) - sum(rows[i] for i in todo)) as bar, \
            process_pool(processes) as pool:
        for n, (index, _) in enumerate(zip(todo, in_order(pool, render_unit, calls, processes)), 1):
            bar.set_postfix_str(f"unit {n}/{len(todo)}", refresh=False)
            bar.update(rows[index])


FINALIZE_LOCK = "finalize.lock"
LOCK_REFRESH_S = 60  # how often the process running stages 2-3 touches the lock
LOCK_STALE_S = 600  # a lock untouched this long is taken over (its process is gone, whatever holds its pid now)


def _lock_stale(path: str) -> tuple[bool, str, tuple | None]:
    """Whether the lock at `path` is left by a process that is gone (not touched for `LOCK_STALE_S`; on this
    host also: its pid is not alive), who holds it, in words, and which file was judged (inode and last touch:
    `_take_over` removes that one only)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True, "nobody", None
    age = time.time() - st.st_mtime
    try:
        holder = read_json(path)
    except (OSError, ValueError):  # removed, being written, or cut short by a kill: judged by its age alone
        holder = {}
    host, pid = (holder.get("host"), holder.get("pid")) if isinstance(holder, dict) else (None, None)
    who = f"pid {pid} on {host}, lock touched {age:.0f} s ago"
    judged = (st.st_ino, st.st_mtime_ns)
    if host == socket.gethostname() and isinstance(pid, int):
        # a pid is reused (a restarted container numbers from 1 again): one alive is the holder only while the
        # lock is touched. Not "our own pid is stale": containers sharing a host name have each their pid 1
        return not _alive(pid) or age > LOCK_STALE_S, who, judged
    return age > LOCK_STALE_S, who, judged


def _take_over(path: str, judged: tuple | None) -> bool:
    """Remove the stale lock `judged` (`_lock_stale`); False when another process took it over first. Two
    processes that judged the same lock stale must not both run: the slower one would remove the faster one's
    fresh lock. The lock is moved aside first (one rename wins), and a moved lock that is not the judged one
    is put back."""
    if judged is None:
        return True  # gone already: creating it decides
    aside = temp_name(path)  # a temporary: removed with the others if this process dies before it does
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # another process moved it first and holds the lock now
    try:
        st = os.stat(aside)
    except FileNotFoundError:  # removed meanwhile with the temporaries of a job that just finished
        return False
    if (st.st_ino, st.st_mtime_ns) == judged:
        with contextlib.suppress(FileNotFoundError):
            os.remove(aside)
        return True
    # another process's fresh lock: back where it was. A link cannot replace a lock a third process made
    # meanwhile; where the filesystem has no hard links (object-store mounts), a rename back does, in a window
    # of microseconds
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    except OSError:
        if not os.path.exists(path):
            with contextlib.suppress(OSError):
                os.rename(aside, path)
    with contextlib.suppress(OSError):
        os.remove(aside)
    return False


@contextlib.contextmanager
def finalize_lock(job: JobConfig) -> Iterator[bool]:
    """Inside, whether this process holds ``output_dir/finalize.lock``: one process at a time runs stages 2-3
    (every rank that finds all units done would run them: a Slurm array resubmitted after a time limit in
    stage 2 started that many dedups, each with its index and pool). The holder touches it every
    `LOCK_REFRESH_S`; a lock whose process is gone is taken over (`_lock_stale`, `_take_over`). A lock only
    saves work: two processes that both ran the stages would write the same files, atomically."""
    import threading

    path, me = os.path.join(job.output_dir, FINALIZE_LOCK), {"host": socket.gethostname(), "pid": os.getpid()}

    def busy(who: str) -> None:
        logger.warning("hf_ipt: every unit of %r is done and another process runs stages 2-3 (dedup, render; %s): "
                       "this one exits. Rerun once it is done to get the manifest; if that process is gone, the lock "
                       "is taken over %d s after its last touch (or remove %s)", job.output_dir, who, LOCK_STALE_S,
                       path)

    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            stale, who, judged = _lock_stale(path)
            if not stale:
                busy(who)
                yield False
                return
            logger.warning("hf_ipt: taking over stages 2-3 of %r from a process that is gone (%s)", job.output_dir, who)
            if not _take_over(path, judged):
                busy("a process that took the lock over first")
                yield False
                return
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    else:
        yield False
        return
    stop = threading.Event()

    def touch() -> None:
        while not stop.wait(LOCK_REFRESH_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    threading.Thread(target=touch, daemon=True, name="hf_ipt-finalize-lock").start()
    try:
        yield True
    finally:
        stop.set()
        with contextlib.suppress(OSError, ValueError):
            if read_json(path) == me:  # not a lock another process took over meanwhile
                os.remove(path)


def finalize(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig, units: list[dict],
             pinned: dict | None = None, progress: bool = False) -> dict:
    """Stages 2-3 once every unit is synthesized; each step skips what an earlier run finished.

    Temporaries of dead processes on this host go first; once the manifest is written, every
    leftover temporary goes (killed processes on other hosts, duplicates of finished units).
    With `pinned` (the `job.json` content this process runs), no manifest is written once
    another run has replaced `job.json` (`check_pinned`). `progress`: bars over pairs (dedup) and
    documents (render).
    """
    folders = [os.path.join(job.output_dir, sub) for sub in ("", "pairs", "data", "dedup")]
    for folder in folders:
        _remove_temporaries(folder)
    stats = [read_json(_path(job, "pairs", i, ".json")) for i in range(len(units))]
    duplicates = {}
    if filters.dedup:
        path = os.path.join(job.output_dir, "dedup.json")
        if not os.path.exists(path):  # a run killed meanwhile resumes after the last unit saved in dedup/
            write_json(path, find_duplicates(job, filters, stats, progress, job.num_proc))
        duplicates = read_json(path)
    _drop_dedup_checkpoints(job)  # dedup.json holds what they led to
    render_units(job, synthesis, stats, duplicates, progress, job.num_proc)
    _write_rejects(job, stats)
    manifest = build_manifest(job, synthesis, filters, stats, duplicates, pinned)
    if pinned is not None:
        check_pinned(job, pinned)
        if KEYWORDS_DIGEST in pinned["synthesis"]:  # what the units were mined with, though the file changed since
            manifest["settings"]["synthesis"][KEYWORDS_DIGEST] = pinned["synthesis"][KEYWORDS_DIGEST]
    write_json(os.path.join(job.output_dir, "manifest.json"), manifest)
    for folder in folders:
        _remove_temporaries(folder, stale_only=False)
    return manifest


def _drop_dedup_checkpoints(job: JobConfig) -> None:
    """Remove ``dedup/`` (about the size of dedup's index) once ``dedup.json`` holds its result."""
    shutil.rmtree(os.path.join(job.output_dir, "dedup"), ignore_errors=True)


def _write_rejects(job: JobConfig, stats: list[dict]) -> None:
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({**reject, "unit": unit["unit"]}, ensure_ascii=False) + "\n"
                         for unit in stats for reject in unit["rejected"])

    write_atomic(os.path.join(job.output_dir, "rejects.jsonl"), write)


# The filters in the order they run (docs/jobs.md's table): `filters_removed` is reported in it.
FILTERS = ("degenerate", "copied_question", "ungrounded", "malformed", "near_duplicate")


def filters_removed_line(removed: dict[str, int]) -> str:
    """``degenerate 0, copied_question 1, ...`` in the filters' order (`manifest.json` is written with
    sorted keys, so a rerun of a finished job read them back alphabetically)."""
    order = sorted(removed, key=lambda name: (FILTERS.index(name) if name in FILTERS else len(FILTERS), name))
    return ", ".join(f"{name} {removed[name]}" for name in order)


def build_manifest(job: JobConfig, synthesis: SynthesisConfig, filters: FilterConfig, stats: list[dict],
                   duplicates: dict, pinned: dict | None = None) -> dict:
    """The job summary that `manifest.json` holds (keys documented in docs/jobs.md); `pinned` is the
    `job.json` content the job runs (`tuning_by_unit`)."""
    import pyarrow.parquet as pq

    from . import __version__
    from .augment import features

    def total(key: str) -> int:
        return sum(s[key] for s in stats)

    def counts(key: str) -> dict:
        return dict(sorted(sum((Counter(s[key]) for s in stats), Counter()).items()))

    files = [os.path.join("data", unit_name(i) + ".parquet") for i in range(len(stats))]
    removed = {**{name: 0 for name in FILTERS[:-1]}, **counts("filtered")}
    removed["near_duplicate"] = sum(len(v) for v in duplicates.values())
    return {
        "format": FORMAT, "hf_ipt_version": __version__,
        "corpus": job.corpus, "corpus_name": job.corpus_name, **locations(job.corpus, synthesis.synthesizer),
        "output": synthesis.output,
        "columns": list(features(synthesis.output)),
        "data_files": files, "num_units": len(stats),
        "rows": sum(pq.ParquetFile(os.path.join(job.output_dir, f)).metadata.num_rows for f in files),
        "docs": {"read": total("docs"), "rejected": sum(len(s["rejected"]) for s in stats),
                 "kept": total("rows")},
        "pairs": {"synthesized": total("pairs_synthesized"), "kept": total("pairs") - removed["near_duplicate"]},
        "filters_removed": removed, "rejects": counts("rejects"),
        "tokens": {"count": total("tokens"), "unit": _token_unit(synthesis)},
        "chain": {k: sum(s["chain"][k] for s in stats) for k in ChainStats.__dataclass_fields__},
        # with a keyword file, its keywords' digest too, as job.json pins it (checked when this run started)
        "settings": {"job": {k: v for k, v in asdict(job).items() if k != "num_proc"}, "filters": asdict(filters),
                     "synthesis": {**recorded_settings(asdict(synthesis)), **keywords_pin(synthesis.domain_keywords)}},
        "engine_tuning": tuning_by_unit(synthesis, stats, pinned),
    }


def tuning_by_unit(synthesis: SynthesisConfig, stats: list[dict], pinned: dict | None) -> list[dict]:
    """Which units ran with which engine tuning (a resumed job may change it: `plan_job`), for the manifest:
    ``[{"settings": {"batch_size": 16, ...}, "units": [0, 2]}, ...]`` in the order of their first unit. A unit
    whose marker records none (written by an older hf_ipt) ran with `pinned`'s, those `job.json` started with.
    Empty for the rule miner, which has no engine to tune."""
    if synthesis.synthesizer == RULES:
        return []
    started = engine_tuning(asdict(synthesis) if pinned is None else pinned["synthesis"])
    groups: dict[str, dict] = {}
    for unit in stats:
        settings = unit.get("engine_tuning", started)
        groups.setdefault(json.dumps(settings, sort_keys=True), {"settings": settings, "units": []})["units"].append(
            unit["unit"])
    return list(groups.values())


def _token_unit(synthesis: SynthesisConfig) -> str:
    return "words" if synthesis.synthesizer == "rules" else "prompt tokens"


# ---------------------------------------------------------------- entry point


def _synthesize_units(job: JobConfig, units: list[dict], todo: list[int], augment: Augmenter,
                      filters: FilterConfig, rank: int, pinned: dict, progress: bool, token_unit: str,
                      done: int = 0) -> None:
    """Stage 1 over the units `todo`, with a progress bar that starts at the `done` units of this rank."""
    made_under = spec_id(pinned)
    if todo:  # before the bar: its rate and ETA count synthesis, not the model load (minutes, for vLLM)
        augment.load_engine()
    bar = Progress(done + len(todo), rank, token_unit, done) if progress and todo else None
    with bar.bar if bar else contextlib.nullcontext():  # closed before any error is printed
        for index in todo:
            if unit_done(job, index, made_under):  # by another process since this one started (a duplicate task)
                logger.warning("hf_ipt: unit %s was finished by another process meanwhile: skipped", unit_name(index))
                if bar:
                    bar.bar.update(1)
                continue
            try:
                synthesize_unit(job, index, units[index], augment, filters, bar, rank, pinned)
            except OSError:
                if not unit_done(job, index, made_under):
                    raise
                # Another process finished this unit and the job meanwhile, and cleaned our temporary up.
                logger.warning("hf_ipt: unit %s was finished by another process", unit_name(index))
            if bar:
                bar.bar.update(1)


def _synthesize_all(job: JobConfig, units: list[dict], todo: list[int], augment: Augmenter, filters: FilterConfig,
                    world: tuple[int, int], pinned: dict, progress: bool, done: int) -> bool:
    """Stage 1 over this rank's units `todo` (`_synthesize_units`); whether every unit of the job is done then,
    so that this process writes the output. Units a run with other settings overwrote meanwhile are redone."""
    made_under, (rank, world_size) = spec_id(pinned), world
    for _ in range(3):
        _synthesize_units(job, units, todo, augment, filters, rank, pinned, progress,
                          _token_unit(augment.config), done)
        done = 0
        waiting = [i for i in range(len(units)) if not unit_done(job, i, made_under)]
        if waiting:
            logger.warning("hf_ipt: rank %d/%d done; %d units of other ranks remain, the last rank to finish "
                           "writes the output", rank, world_size, len(waiting))
            return False
        # Every unit is done: before stage 2, redo here any a run with other settings overwrote meanwhile.
        if not (todo := _redo_damaged(job, len(units), pinned)):
            return True
    raise UsageError(f"units of {job.output_dir!r} keep being overwritten by a run with other settings; "
                     "stop the other run, or give each its own `output_dir`")


def check_dedup_installed(filters: FilterConfig) -> None:
    """Stage 2's near-duplicate pass needs `datasketch`: refuse a job without it before any unit is
    synthesized, while ``--no_dedup`` can still be chosen (once a unit is done, `job.json` pins it),
    rather than after hours of synthesis."""
    if not filters.dedup:
        return
    try:
        NearDuplicates(filters)
    except ImportError as error:
        raise MissingDependencyError(
            "near-duplicate removal of pairs (stage 2 of the job, on by default: FilterConfig.dedup) needs "
            "`datasketch`, a dependency of hf_ipt that an install with --no-deps lacks: pip install "
            "'datasketch>=1.6' in this environment, or start the job with --no_dedup"
        ) from error


def _refuse_in_pool_start() -> None:
    """A process of a stage-2/3 pool imports the script that started the job as it starts (spawn): there, a
    `run_job` call not under ``if __name__ == "__main__":`` ran the job again in every pool process."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):  # what the stdlib's own check reads
        raise RuntimeError("`run_job` was called while a process of hf_ipt's pool (stages 2-3) started: it imports "
                           "the script that runs the job, and that script calls `run_job` outside "
                           "`if __name__ == \"__main__\":`. Move the call under it, as any script that starts "
                           "processes must, or run the job with JobConfig(num_proc=1)")


def resume_message(done: int, units: int, rank: int, world_size: int) -> str:
    """What a rerun finds: ``5 of 8 units already done, resuming with the other 3``."""
    found = f"{done} of {units} units{f' of rank {rank}/{world_size}' if world_size > 1 else ''} already done"
    return found if done == units else f"{found}, resuming with the other {units - done}"


def idle_ranks_message(rank: int, world_size: int, num_units: int) -> str:
    """What a rank of a world larger than the job's units says: which ranks have nothing to do and the fix."""
    idle = world_size - num_units
    whose = f"this rank ({rank}) is one of them" if rank >= num_units else f"ranks {num_units}..{world_size - 1}"
    return (f"the job has {num_units} units for {world_size} processes: {idle} of them have no unit and exit "
            f"({whose}); a new job with `num_shards` a multiple of {world_size} keeps every process busy (a started "
            "job keeps its units: job.json)")


def run_job(job: JobConfig, synthesis: SynthesisConfig | None = None, filters: FilterConfig | None = None,
            rank: int | None = None, world_size: int | None = None, progress: bool = True) -> dict | None:
    """Run (or resume) this process's share of a job; finish the job if it is the last one.

    Args:
        job (`JobConfig`): corpus, units and output folder.
        synthesis (`SynthesisConfig`, *optional*): synthesizer settings (default: the rule miner).
        filters (`FilterConfig`, *optional*): pair filters and dedup (default: `FilterConfig()`).
        rank (`int`, *optional*), world_size (`int`, *optional*): both or neither; default `world_from_env()`.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar.

    Returns:
        `dict | None`: the manifest when this process saw every unit done, else `None`.
    """
    _refuse_in_pool_start()
    synthesis, filters = synthesis or SynthesisConfig(), filters or FilterConfig()
    if (rank is None) != (world_size is None):
        raise ValueError(f"give `rank` and `world_size` together, or neither (read from the environment); got "
                         f"rank={rank}, world_size={world_size}")
    if rank is None or world_size is None:
        rank, world_size = world_from_env()
    elif not 0 <= rank < world_size:
        raise ValueError(f"`rank` must be in 0..world_size-1, got rank={rank}, world_size={world_size}")
    check_dedup_installed(filters)
    units, pinned, changes = plan_job(job, synthesis, filters)
    synthesis = _at_pinned_commit(synthesis, pinned)  # the manifest records it as the revision
    manifest_path = os.path.join(job.output_dir, "manifest.json")
    if (manifest := _finished(job, len(units))) is not None:
        pin_job(job, pinned, changes)
        _drop_dedup_checkpoints(job)  # left by a run killed after the manifest
        logger.warning("hf_ipt: the job in %r is already complete (manifest.json found): nothing to do; a new job "
                       "needs a new `output_dir`", job.output_dir)
        return manifest
    for sub in ("", "pairs", "data"):  # partial units of this host's killed runs (an OOM kill each): not only at the end
        _remove_temporaries(os.path.join(job.output_dir, sub))
    _redo_damaged(job, len(units), pinned)
    made_under = spec_id(pinned)  # once: the spec lists every unit, and each check below compares with it
    _drop_stale_derived(job, len(units), made_under)
    mine = range(rank, len(units), world_size)
    if world_size > len(units) and (rank == 0 or not mine):  # rank 0's log, and each idle rank's own
        logger.warning("hf_ipt: %s", idle_ranks_message(rank, world_size, len(units)))
    todo = [i for i in mine if not unit_done(job, i, made_under)]
    done = len(mine) - len(todo)  # the bar starts there; units redone below get a bar of their own
    if done:
        logger.warning("hf_ipt: %s", resume_message(done, len(mine), rank, world_size))
    augment = Augmenter(replace(synthesis, output="pairs"), corpus_name=job.corpus_name)
    if augment.keywords_digest != pinned["synthesis"].get(KEYWORDS_DIGEST, augment.keywords_digest):
        raise UsageError(f"the keywords in file {synthesis.domain_keywords!r} were edited while this run started "
                         "(they differ from those job.json pins): restore the file and rerun")
    if todo:  # settings found wrong as the synthesizer loads (a device, an engine argument) are not pinned
        augment.load_engine()
    pin_job(job, pinned, changes)
    finished = _synthesize_all(job, units, todo, augment, filters, (rank, world_size), pinned, progress, done)
    augment.close()  # stages 2-3 need no engine: the rank that writes the output frees its GPU memory first
    if not finished:
        return None
    with finalize_lock(job) as mine:
        if not mine:
            return None
        try:
            return finalize(job, synthesis, filters, units, pinned, progress)
        except OSError:
            if not os.path.exists(manifest_path):
                raise
            # Another process finished the job meanwhile and removed our temporaries: its output is ours.
            return read_json(manifest_path)
