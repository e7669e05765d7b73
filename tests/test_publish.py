"""Publishing: the dataset card as text, and `push_dataset` / `hf-ipt push` against a fake Hub.

The fake Hub (`tests/fake_hub.py`) listens on 127.0.0.1 only; the real `huggingface_hub`
client talks to it, as it would to huggingface.co with ``HF_ENDPOINT`` set.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hf_ipt import publish
from hf_ipt.augment import SynthesisConfig, features
from hf_ipt.cli import UsageError
from hf_ipt.publish import config_name_for, push_dataset, read_output, render_dataset_card

from .fake_hub import DROP, FakeHub
from .test_cli import hf_ipt

TOKEN = "hf_fakeTOKEN0123456789secret"
READ_TOKEN = "hf_fakeREADonly0123456789"  # reads what TOKEN reads, cannot write
REPO = "my-org/augmented"
SYNTHESIZER = "instruction-pretrain/instruction-synthesizer"


def rows(corpus: str, n: int, start: int = 0) -> list[dict]:
    return [{"id": f"{corpus}:{i}", "corpus": corpus, "text": f"Text {i} of {corpus}.", "doc_ids": [f"{corpus}:{i}"],
             "num_pairs": 2} for i in range(start, start + n)]


def write_parquet(path: Path, data: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(data, schema=features("templified").arrow_schema), path)


def augment_output(path: Path, corpus: str = "bbc-business", n: int = 3) -> Path:
    """What `hf-ipt augment` writes: data.parquet + summary.json."""
    write_parquet(path / "data.parquet", rows(corpus, n))
    summary = {"corpus": corpus, "rows": n, "pairs": 2 * n, "output": str(path / "data.parquet"),
               "synthesis": asdict(SynthesisConfig(seed=3))}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def job_output(path: Path, corpus: str = "data/finance/*.jsonl", shards: int = 2) -> Path:
    """What a resumable `hf-ipt synthesize` job writes: data/*.parquet + manifest.json (`jobs.build_manifest`)."""
    files = [f"data/{k:05d}.parquet" for k in range(shards)]
    for k, name in enumerate(files):
        write_parquet(path / name, rows("finance", 2, start=2 * k))
    synthesis = asdict(SynthesisConfig(synthesizer=SYNTHESIZER, revision="a1b2c3d", rounds=3, backend="transformers"))
    manifest = {
        "format": "hf_ipt.synthesis-job/1", "hf_ipt_version": "0.1.0", "corpus": corpus, "corpus_name": "finance",
        "output": "templified", "data_files": files, "rows": 2 * shards,
        "docs": {"read": 9, "rejected": 2, "kept": 7}, "pairs": {"synthesized": 20, "kept": 17},
        "filters_removed": {"degenerate": 1, "near_duplicate": 2}, "rejects": {"empty": 1, "too_long": 1},
        "tokens": {"count": 12000, "unit": "prompt tokens"}, "chain": {"truncated": 1, "errors": 0},
        "settings": {"job": {"corpus": corpus}, "synthesis": synthesis,
                     "filters": {"dedup": True, "min_grounding": 0.5}},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# ---------------------------------------------------------------------------- card as text


def test_card_shows_synthesizer_settings_counts_and_citation(tmp_path):
    info = read_output(job_output(tmp_path))
    card = render_dataset_card({"repo_id": REPO, "configs": [info]})
    assert f"- **Synthesizer:** `{SYNTHESIZER}`, revision `a1b2c3d`" in card
    assert "- **Rounds:** 3; **output:** templified" in card
    assert "- **Documents:** read: 9, rejected: 2, kept: 7; **rows:** 4; **pairs:** synthesized: 20, kept: 17" in card
    assert "- **Rejected documents:** empty: 1, too_long: 1" in card
    assert "- **Removed by filters:** degenerate: 1, near_duplicate: 2" in card
    assert "- **Tokens:** 12,000 prompt tokens" in card and "- **Chaining:** truncated: 1, errors: 0" in card
    assert "| max_new_tokens | 400 |" in card and "| backend | transformers |" in card and "| device | none |" in card
    assert "| dedup | true |" in card and "| min_grounding | 0.5 |" in card
    assert f"| `finance` | `{SYNTHESIZER}` | 3 | templified | 4 | synthesized: 20, kept: 17 |" in card
    assert f'load_dataset("{REPO}", "finance", split="train")' in card
    assert "@inproceedings{cheng2024instruction," in card and "Instruction Pre-Training" in card
    assert front_matter(card)["configs"] == [
        {"config_name": "finance", "data_files": [{"split": "train", "path": "finance/*.parquet"}]}
    ]


def test_card_renders_unrecorded_stats_as_not_recorded():
    card = render_dataset_card({"repo_id": REPO, "configs": [{"config_name": "legacy"}]})
    assert "- **Synthesizer:** not recorded, revision not recorded" in card
    assert "- **Documents:** not recorded; **rows:** not recorded; **pairs:** not recorded" in card
    assert "| `legacy` | not recorded | not recorded | not recorded | not recorded | not recorded |" in card
    assert "$" not in card  # every placeholder filled
    with pytest.raises(ValueError, match="at least one config"):
        render_dataset_card({"repo_id": REPO, "configs": []})


def test_card_keeps_existing_metadata_and_foreign_config_entries():
    foreign = {"config_name": "hand-made", "data_files": "extra/*.jsonl", "default": True}
    card = render_dataset_card({
        "repo_id": REPO,
        "configs": [{"config_name": "zeta", "synthesizer": "rules"}, {"config_name": "hand-made", "yaml": foreign}],
        "metadata": {"license": "cc-by-4.0", "tags": ["mine"], "configs": [foreign]},
    })
    meta = front_matter(card)
    assert meta["license"] == "cc-by-4.0" and meta["tags"] == ["mine"]
    zeta = {"config_name": "zeta", "data_files": [{"split": "train", "path": "zeta/*.parquet"}]}
    assert meta["configs"] == [foreign, zeta]
    assert "- **Synthesizer:** `rules`, revision n/a (model-free miner)" in card


def test_read_output_of_augment_layout(tmp_path):
    info = read_output(augment_output(tmp_path))
    assert info["config_name"] == "bbc-business" and info["source"] == "summary.json"
    assert (info["rows"], info["pairs"], info["docs"], info["tokens"]) == (3, 6, None, None)
    assert info["synthesizer"] == "rules" and info["settings"]["seed"] == 3
    assert info["data_files"] == ["bbc-business/data.parquet"]
    # A summary listing a model's defaults for a rules run (as 0.2.0 wrote it): the card shows the miner's
    # settings only, not `backend: vllm` or a number of rounds
    assert {"backend", "rounds", "dtype", "temperature"}.isdisjoint(info["settings"])
    assert info["settings"]["num_keywords"] == 100 and info["rounds"] == "n/a (mined text by text)"
    card = render_dataset_card({"repo_id": "org/aug", "configs": [info]})
    assert "| backend |" not in card and "- **Rounds:** n/a (mined text by text)" in card


def test_read_output_without_stats_or_data(tmp_path):
    write_parquet(tmp_path / "run" / "data.parquet", rows("x", 1))
    info = read_output(tmp_path / "run")
    assert info["config_name"] == "run" and info["source"] is None and info["rows"] is None
    with pytest.raises(FileNotFoundError, match="data/\\*.parquet"):
        read_output(tmp_path / "empty")


def test_read_output_of_a_real_job_and_refuses_an_unfinished_one(tmp_path):
    from hf_ipt.jobs import JobConfig, run_job

    from .test_builder import write_jsonl

    (tmp_path / "finance").mkdir()
    write_jsonl(tmp_path / "finance" / "news.jsonl", 4)
    job = JobConfig(corpus=str(tmp_path / "finance" / "*.jsonl"), output_dir=str(tmp_path / "out"), num_shards=2)
    manifest = run_job(job, progress=False)
    info = read_output(tmp_path / "out")
    assert info["config_name"] == "finance" and info["source"] == "manifest.json"
    assert info["data_files"] == ["finance/00000.parquet", "finance/00001.parquet"]
    assert (info["rows"], info["pairs"], info["docs"]) == (manifest["rows"], manifest["pairs"], manifest["docs"])
    assert info["filter_settings"] == manifest["settings"]["filters"] and info["synthesizer"] == "rules"
    card = render_dataset_card({"repo_id": REPO, "configs": [info]})
    removed = next(line for line in card.splitlines() if line.startswith("- **Removed by filters:** "))
    assert all(f"{reason}: {count:,}" in removed for reason, count in manifest["filters_removed"].items())
    (tmp_path / "out" / "manifest.json").unlink()  # as if the last rank had not finished yet
    with pytest.raises(ValueError, match="not finished"):
        read_output(tmp_path / "out")


@pytest.mark.parametrize("corpus, name", [
    ("bbc-business", "bbc-business"), ("data/finance/*.jsonl", "finance"), ("/tmp/news.jsonl", "news"),
    ("org/pubmed_abstracts", "pubmed_abstracts"), ("my corpus (v2)", "my-corpus-v2"),
])
def test_config_name_for(corpus, name):
    assert config_name_for(corpus) == name


def test_config_name_for_rejects_unnamed_corpus_and_unsafe_names(tmp_path):
    with pytest.raises(ValueError, match="config_name"):
        config_name_for("*/*.txt")
    with pytest.raises(ValueError, match="names a folder"):
        read_output(augment_output(tmp_path), config_name="../escape")


# ---------------------------------------------------------------------------- push to a fake Hub


@pytest.fixture
def hub(monkeypatch):
    """A fake Hub that requires `TOKEN`, and huggingface_hub pointed at it as HF_ENDPOINT would."""
    from huggingface_hub import constants

    with FakeHub(token=TOKEN, read_token=READ_TOKEN) as fake:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest's HF_HUB_OFFLINE=1, for this hub only
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(publish, "BACKOFF_S", 0.01)
        yield fake


def test_push_uploads_data_stats_and_card(hub, tmp_path):
    url = push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert url == f"{hub.url}/datasets/{REPO}"
    files = hub.files(REPO)
    assert sorted(files) == ["README.md", "bbc-business/data.parquet", "bbc-business/stats.json"]
    assert files["bbc-business/data.parquet"] == (tmp_path / "bbc" / "data.parquet").read_bytes()
    assert json.loads(files["bbc-business/stats.json"])["rows"] == 3
    card = files["README.md"].decode()
    assert [c["config_name"] for c in front_matter(card)["configs"]] == ["bbc-business"]
    assert "- **Documents:** not recorded; **rows:** 3; **pairs:** 6" in card
    assert len(hub.commits) == 1 and hub.commits[0]["summary"] == "hf_ipt: publish config bbc-business"


def test_a_run_records_its_own_backends_settings_not_the_others():
    """A transformers run's summary and manifest recorded vLLM's `tensor_parallel_size` and
    `gpu_memory_utilization` (and a vLLM run the transformers backend's `batch_size`, `device`...)."""
    from dataclasses import asdict

    from hf_ipt.augment import SynthesisConfig, recorded_settings

    hf = recorded_settings(asdict(SynthesisConfig(synthesizer="org/synth", backend="transformers", batch_size=8)))
    assert hf["batch_size"] == 8 and "device" in hf
    assert not {"tensor_parallel_size", "gpu_memory_utilization", "engine_kwargs"} & set(hf)
    vllm = recorded_settings(asdict(SynthesisConfig(synthesizer="org/synth", backend="vllm", tensor_parallel_size=2)))
    assert vllm["tensor_parallel_size"] == 2 and not {"batch_size", "static_cache", "device"} & set(vllm)
    assert "backend" not in recorded_settings(asdict(SynthesisConfig()))  # the miner: no model settings at all


def test_the_data_license_goes_into_the_card_and_is_kept_by_later_pushes(hub, tmp_path):
    """Pushed data carries its corpus's license: nothing could put one in the card but an edit by hand."""
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, license="cc-by-4.0")
    assert front_matter(hub.files(REPO)["README.md"].decode())["license"] == "cc-by-4.0"
    push_dataset(job_output(tmp_path / "fin", shards=1), REPO, token=TOKEN)  # unset: the card's is kept
    meta = front_matter(hub.files(REPO)["README.md"].decode())
    assert meta["license"] == "cc-by-4.0" and [c["config_name"] for c in meta["configs"]] == ["bbc-business", "finance"]
    commits = len(hub.commits)
    # one license covers the repo: another one for this corpus relabelled bbc-business, pushed as cc-by-4.0
    with pytest.raises(UsageError, match=r"card gives the license 'cc-by-4.0', which covers its other configs "
                                         r"\(bbc-business\): --license other would relabel them"):
        push_dataset(job_output(tmp_path / "fin", shards=1), REPO, token=TOKEN, license="other")
    assert len(hub.commits) == commits and front_matter(hub.files(REPO)["README.md"].decode())["license"] == "cc-by-4.0"
    push_dataset(job_output(tmp_path / "fin", shards=1), REPO, token=TOKEN, license="cc-by-4.0")  # the same: fine
    alone = "user/alone"
    push_dataset(augment_output(tmp_path / "bbc"), alone, token=TOKEN, license="cc-by-4.0")
    push_dataset(augment_output(tmp_path / "bbc"), alone, token=TOKEN, license="other")  # its only config: relabelled
    assert front_matter(hub.files(alone)["README.md"].decode())["license"] == "other"
    unlicensed = "user/unlicensed"  # a card with no license: --license would have labelled its other configs
    push_dataset(augment_output(tmp_path / "bbc"), unlicensed, token=TOKEN)
    commits = len(hub.commits)
    with pytest.raises(UsageError, match=r"card gives no license, and it holds other configs \(bbc-business\): "
                                         r"--license mit would label them too"):
        push_dataset(job_output(tmp_path / "fin", shards=1), unlicensed, token=TOKEN, license="mit")
    assert len(hub.commits) == commits and "license" not in front_matter(hub.files(unlicensed)["README.md"].decode())
    push_dataset(augment_output(tmp_path / "bbc"), unlicensed, token=TOKEN, license="mit")  # its only config: labelled
    assert front_matter(hub.files(unlicensed)["README.md"].decode())["license"] == "mit"
    commits = len(hub.commits)
    with pytest.raises(UsageError, match=r"`license` 'CC BY 4.0' is no Hub license id: give one such as cc-by-4.0"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, license="CC BY 4.0")
    assert len(hub.commits) == commits


def test_second_corpus_keeps_first_config_and_repush_replaces_files(hub, tmp_path):
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    push_dataset(job_output(tmp_path / "fin", shards=2), REPO, token=TOKEN)
    card = hub.files(REPO)["README.md"].decode()
    assert [c["config_name"] for c in front_matter(card)["configs"]] == ["bbc-business", "finance"]
    assert "### `bbc-business`" in card and "**rows:** 4; **pairs:** synthesized: 20, kept: 17" in card
    assert "- **Documents:** not recorded; **rows:** 3; **pairs:** 6" in card  # first config's stats kept

    push_dataset(job_output(tmp_path / "fin2", shards=1), REPO, token=TOKEN)  # fewer shards this time
    files = hub.files(REPO)
    assert sorted(p for p in files if p.startswith("finance/")) == ["finance/00000.parquet", "finance/stats.json"]
    assert "bbc-business/data.parquet" in files
    configs = front_matter(files["README.md"].decode())["configs"]
    assert [c["config_name"] for c in configs] == ["bbc-business", "finance"]


def test_reading_the_existing_card_is_retried_and_never_guessed(hub, tmp_path):
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    hub.fail_next("resolve", 503)  # retried by huggingface_hub's http_backoff
    before, head = len(hub.requests), hub.heads[("dataset", REPO, "main")]
    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)
    assert hub.requests[before:].count(("GET", f"/datasets/{REPO}/resolve/{head}/README.md")) == 2  # at the head
    card = hub.files(REPO)["README.md"].decode()
    assert [c["config_name"] for c in front_matter(card)["configs"]] == ["bbc-business", "finance"]

    hub.fail_next("resolve", 403)  # not transient: the push fails rather than drop the configs it cannot read
    with pytest.raises(Exception, match="403"):
        push_dataset(augment_output(tmp_path / "other", corpus="other"), REPO, token=TOKEN)
    assert len(hub.commits) == 2 and hub.files(REPO)["README.md"].decode() == card


def configs_of(hub, revision: str = "main") -> list[str]:
    return [c["config_name"] for c in front_matter(hub.files(REPO, revision)["README.md"].decode())["configs"]]


def test_a_commit_landing_between_read_and_commit_is_not_dropped(hub, tmp_path):
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    other = augment_output(tmp_path / "other", corpus="other")
    # another client pushes config `other` after this push read the card, just before it commits
    hub.before_next("commit", lambda: push_dataset(other, REPO, token=TOKEN))
    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)
    assert configs_of(hub) == ["bbc-business", "finance", "other"]  # read again after the 412, so `other` stays
    card = hub.files(REPO)["README.md"].decode()
    assert "### `other`" in card and "**rows:** 4; **pairs:** synthesized: 20, kept: 17" in card
    assert {"other/data.parquet", "finance/00001.parquet", "bbc-business/data.parquet"} <= set(hub.files(REPO))
    assert hub.requests.count(("POST", f"/api/datasets/{REPO}/commit/main")) == 4  # one refused with 412
    assert all(c.get("parentCommit") for c in hub.commits)  # each made on top of the head it was rendered from


def test_conflicts_give_up_after_conflict_attempts(hub, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError

    hub.fail_next("commit", 412, times=publish.CONFLICT_ATTEMPTS)
    with pytest.raises(HfHubHTTPError, match="412"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert hub.requests.count(("GET", f"/api/datasets/{REPO}")) == publish.CONFLICT_ATTEMPTS  # head read each time
    assert hub.files(REPO) == {}


def test_another_corpus_under_a_taken_config_name_is_refused_unless_overwrite(hub, tmp_path):
    push_dataset(augment_output(tmp_path / "x", corpus="/x/train.jsonl"), REPO, token=TOKEN)
    before = hub.files(REPO)
    y = augment_output(tmp_path / "y", corpus="/y/train.jsonl")  # also derives config `train`
    with pytest.raises(ValueError, match=r"'.../train.jsonl' \(local path digest sha256:\w+\).*not corpus "
                                         r"'.../train.jsonl' \(local path digest sha256:\w+\).*--config_name NEW.*"
                                         r"--overwrite"):
        push_dataset(y, REPO, token=TOKEN)
    assert hub.files(REPO) == before and len(hub.commits) == 1

    push_dataset(y, REPO, token=TOKEN, config_name="train-y")  # beside it
    push_dataset(y, REPO, token=TOKEN, overwrite=True)  # or in its place
    assert configs_of(hub) == ["train", "train-y"]
    stats = json.loads(hub.files(REPO)["train/stats.json"])
    assert stats["corpus"] == ".../train.jsonl" and stats["corpus_location"] == publish.hidden_location("/y/train.jsonl")
    push_dataset(y, REPO, token=TOKEN)  # the same corpus again needs no flag
    assert len(hub.commits) == 4


def test_a_push_beside_data_that_datasets_lays_out_without_configs_or_into_another_configs_folder_is_refused(
        hub, tmp_path):
    """A repo whose README lists no `configs:` but holds `train.parquet`: `load_dataset` read it as config
    `default`; once a pushed config was listed, that data was hidden (`load_dataset(repo)` gave the pushed rows,
    "default" was not found). A config whose folder holds another config's files (`push_to_hub`'s `data/` of
    `default`, under a config named `data`): `--overwrite` deleted them and left `default` listed, unloadable.
    A README with broken YAML: a traceback, not a usage error."""
    import io

    from hf_ipt.cli import UsageError

    table = io.BytesIO()
    pq.write_table(pa.table({"text": ["theirs"] * 3}), table)
    hub.put(REPO, {"README.md": "---\nlicense: mit\n---\n# theirs\n", "train.parquet": table.getvalue()})
    before = hub.files(REPO)
    with pytest.raises(UsageError, match=r"holds data files that its README lists in no `configs:` entry, such as "
                                         r"'train.parquet' \(1 in all\).*would hide them"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert hub.files(REPO) == before

    other = "org/laid-out"
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    hub.put(other, {"README.md": card, "data/train-00000-of-00001.parquet": table.getvalue()})
    before = hub.files(other)
    for overwrite in (False, True):
        with pytest.raises(UsageError, match=r"folder data/ of org/laid-out holds data files of config 'default', "
                                             r"such as 'data/train-00000-of-00001.parquet'.*--config_name"):
            push_dataset(augment_output(tmp_path / "bbc"), other, token=TOKEN, config_name="data", overwrite=overwrite)
    assert hub.files(other) == before
    push_dataset(augment_output(tmp_path / "bbc"), other, token=TOKEN)  # beside it, in a folder of its own
    assert {"data/train-00000-of-00001.parquet", "bbc-business/data.parquet"} <= set(hub.files(other))

    hub.put("org/broken", {"README.md": "---\nconfigs: [unclosed\n---\n"})
    with pytest.raises(UsageError, match=r"README.md has invalid YAML metadata.*fix the README on the Hub"):
        push_dataset(augment_output(tmp_path / "bbc"), "org/broken", token=TOKEN)


@pytest.mark.parametrize("command", ["synthesize", "augment"])
def test_the_same_relative_corpus_of_two_projects_is_two_corpora(hub, tmp_path, monkeypatch, caplog, command):
    """Both projects ran `--corpus "data/*.jsonl"` in their own folder: both derive config `data`, and the
    second push replaced the first project's rows, as the corpus was compared as typed."""
    from hf_ipt.augment_cli import main as augment
    from hf_ipt.jobs import JobConfig, run_job

    from .test_builder import write_jsonl

    def run(project: str, start: int) -> Path:
        (tmp_path / project / "data").mkdir(parents=True)
        write_jsonl(tmp_path / project / "data" / "news.jsonl", 3, start=start)
        monkeypatch.chdir(tmp_path / project)
        if command == "synthesize":
            run_job(JobConfig(corpus="data/*.jsonl", output_dir="out", num_shards=1), progress=False)
        else:
            augment(["--corpus", "data/*.jsonl", "--output_dir", "out"])
        record, _ = publish.output_record("out")
        assert record["corpus"] == "data/*.jsonl"
        assert record["corpus_location"] == str(tmp_path / project / "data" / "*.jsonl")
        assert record["synthesizer_location"] == "rules"
        return tmp_path / project / "out"

    finance = run("finance", 0)
    with caplog.at_level(logging.WARNING, logger="hf_ipt"):
        push_dataset("out", REPO, token=TOKEN)
    assert "config name 'data', derived from corpus 'data/*.jsonl', is a generic folder name" in caplog.text
    before = hub.files(REPO)
    medicine = run("medicine", 100)
    digest = publish.hidden_location(str(tmp_path / "finance" / "data" / "*.jsonl"))
    with pytest.raises(publish.ConfigTakenError, match=rf"holds corpus 'data/\*.jsonl' \(local path digest {digest}\)"
                                                     r".*not corpus 'data/\*.jsonl' \(local path digest sha256:"):
        push_dataset("out", REPO, token=TOKEN)
    assert hub.files(REPO) == before
    stats = json.loads(before["data/stats.json"])
    assert stats["corpus_location"] == digest and str(tmp_path).encode() not in before["data/stats.json"]  # no path
    push_dataset(medicine, REPO, token=TOKEN, config_name="medicine")  # beside it
    monkeypatch.chdir(tmp_path)
    push_dataset(finance, REPO, token=TOKEN)  # the same corpus, pushed from anywhere, is replaced without a flag
    assert configs_of(hub) == ["data", "medicine"] and len(hub.commits) == 3


def test_a_local_synthesizer_is_compared_by_where_it_is(hub, tmp_path, monkeypatch):
    from hf_ipt.augment import locations

    for project in ("a", "b"):
        (tmp_path / project / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    assert locations("news.jsonl", "./model") == {"corpus_location": str(tmp_path / "a" / "news.jsonl"),
                                                  "synthesizer_location": str(tmp_path / "a" / "model")}
    assert locations("org/news", "org/model") == {"corpus_location": "org/news", "synthesizer_location": "org/model"}

    def output(path: Path, project: str) -> Path:
        job_output(path, corpus="/corpora/finance/*.jsonl")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["settings"]["synthesis"]["synthesizer"] = "./model"
        manifest["synthesizer_location"] = str(tmp_path / project / "model")
        (path / "manifest.json").write_text(json.dumps(manifest))
        return path

    push_dataset(output(tmp_path / "out-a", "a"), REPO, token=TOKEN)
    digests = [publish.hidden_location(str(tmp_path / project / "model")) for project in ("a", "b")]
    with pytest.raises(ValueError, match=rf"synthesizer './model' \(local path digest {digests[0]}\)\), not .*'./model' "
                                         rf"\(local path digest {digests[1]}\)"):
        push_dataset(output(tmp_path / "out-b", "b"), REPO, token=TOKEN)
    push_dataset(output(tmp_path / "out-a2", "a"), REPO, token=TOKEN)
    assert len(hub.commits) == 2


def test_another_config_of_the_same_dataset_corpus_is_refused_and_named_on_the_card(hub, tmp_path):
    def subset(path: Path, corpus_config: str) -> Path:  # a job on one config of a dataset corpus
        job_output(path, corpus="org/news")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["corpus_name"] = "org/news"  # both derive config `news`
        manifest["settings"]["job"].update(corpus_config=corpus_config, corpus_split="train")
        (path / "manifest.json").write_text(json.dumps(manifest))
        return path

    push_dataset(subset(tmp_path / "fin", "finance"), REPO, token=TOKEN)
    before = hub.files(REPO)
    assert "- **Corpus:** `org/news` (config 'finance', split 'train')" in before["README.md"].decode()
    with pytest.raises(ValueError, match=r"'org/news' \(config 'finance'.*not corpus 'org/news' \(config 'tech'"):
        push_dataset(subset(tmp_path / "tech", "tech"), REPO, token=TOKEN)
    assert hub.files(REPO) == before
    push_dataset(subset(tmp_path / "fin2", "finance"), REPO, token=TOKEN)  # the same subset again needs no flag
    push_dataset(tmp_path / "tech", REPO, token=TOKEN, config_name="news-tech")
    assert configs_of(hub) == ["news", "news-tech"]


def test_another_synthesizer_or_an_unknown_config_is_refused_unless_overwrite(hub, tmp_path):
    from huggingface_hub import HfApi

    from hf_ipt import publish_cli

    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)  # corpus data/finance/*.jsonl, a model
    rules = augment_output(tmp_path / "rules", corpus="data/finance/*.jsonl")  # same corpus, the rules miner
    with pytest.raises(ValueError, match=f"synthesizer '{SYNTHESIZER}'.*synthesizer 'rules'"):
        push_dataset(rules, REPO, token=TOKEN)
    argv = ["--output_dir", str(rules), "--repo_id", REPO, "--token", TOKEN]
    with pytest.raises(SystemExit) as exit_:  # a usage error (exit status 2), not a traceback
        publish_cli.main(argv)
    assert exit_.value.code == 2
    assert publish_cli.main([*argv, "--overwrite"]) == 0
    assert json.loads(hub.files(REPO)["finance/stats.json"])["synthesizer"] == "rules"

    card = "---\nconfigs:\n- config_name: hand-made\n  data_files: extra/*.jsonl\n---\n"
    HfApi(token=TOKEN).upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=REPO,
                                   repo_type="dataset")
    with pytest.raises(ValueError, match="'hand-made' of my-org/augmented was not pushed by hf_ipt"):
        push_dataset(rules, REPO, token=TOKEN, config_name="hand-made")


def test_a_config_made_the_default_by_hand_stays_the_default_when_pushed_again(hub, tmp_path):
    from huggingface_hub import HfApi

    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)
    readme = hub.files(REPO)["README.md"].decode().replace("- config_name: finance\n",
                                                           "- config_name: finance\n  default: true\n")
    HfApi(token=TOKEN).upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=REPO,
                                   repo_type="dataset")  # so that load_dataset(REPO) needs no config name
    push_dataset(job_output(tmp_path / "fin2", shards=1), REPO, token=TOKEN)  # the default config again
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)  # and another one
    configs = front_matter(hub.files(REPO)["README.md"].decode())["configs"]
    assert [(c["config_name"], c.get("default")) for c in configs] == [("bbc-business", None), ("finance", True)]
    assert configs[1]["data_files"] == [{"split": "train", "path": "finance/*.parquet"}]


def test_stale_files_already_gone_are_not_deleted(hub, tmp_path):
    push_dataset(job_output(tmp_path / "fin", shards=3), REPO, token=TOKEN)
    hub.repos[("dataset", REPO)]["main"].pop("finance/00002.parquet")  # removed by hand since
    push_dataset(job_output(tmp_path / "fin1", shards=1), REPO, token=TOKEN)
    assert sorted(p for p in hub.files(REPO) if p.startswith("finance/")) == ["finance/00000.parquet",
                                                                               "finance/stats.json"]


def test_a_lost_commit_answer_is_not_a_failure(hub, tmp_path):
    push_dataset(job_output(tmp_path / "fin", shards=2), REPO, token=TOKEN)
    hub.fail_next("commit", 503, applied=True)  # the commit lands, its answer is lost
    push_dataset(job_output(tmp_path / "fin1", shards=1), REPO, token=TOKEN)  # re-sent: 412, read again, commit
    assert sorted(p for p in hub.files(REPO) if p.startswith("finance/")) == ["finance/00000.parquet",
                                                                               "finance/stats.json"]
    assert hub.requests.count(("POST", f"/api/datasets/{REPO}/commit/main")) == 4


def test_push_to_a_branch_leaves_main_alone(hub, tmp_path):
    url = push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision="v2")
    assert url.endswith(f"/datasets/{REPO}/tree/v2")
    assert "bbc-business/data.parquet" in hub.files(REPO, revision="v2") and hub.files(REPO) == {}


@pytest.mark.parametrize("kind, status", [("create", 429), ("preupload", 503), ("commit", 503), ("commit", 502)])
def test_transient_errors_are_retried(hub, tmp_path, kind, status):
    hub.fail_next(kind, status)
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert "bbc-business/data.parquet" in hub.files(REPO)
    path = "/api/repos/create" if kind == "create" else f"/api/datasets/{REPO}/{kind}/main"
    assert hub.requests.count(("POST", path)) == 2  # the failure, then the success


@pytest.mark.parametrize("kind, applied", [("create", False), ("info", False), ("commit", False), ("commit", True)])
def test_a_dropped_connection_is_retried(hub, tmp_path, kind, applied):
    """No HTTP status at all (a reset connection, a timeout): retried like a 503. A commit that
    landed before its connection dropped is found out by its parent commit (412) and redone."""
    hub.fail_next(kind, DROP, applied=applied)
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert "bbc-business/data.parquet" in hub.files(REPO)


def test_a_proxys_html_error_page_is_retried(hub, tmp_path):
    hub.fail_next("validate_yaml", 502, html=True)  # huggingface_hub reads this answer as JSON first
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert "bbc-business/data.parquet" in hub.files(REPO)
    assert hub.requests.count(("POST", "/api/validate-yaml")) == 2


def test_a_connection_that_keeps_dropping_fails_after_max_attempts(hub, tmp_path):
    hub.fail_next("create", DROP, times=publish.MAX_ATTEMPTS)
    with pytest.raises(publish._connection_errors()):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert hub.requests.count(("POST", "/api/repos/create")) == publish.MAX_ATTEMPTS


def test_a_bare_repo_name_is_pushed_under_the_users_namespace(hub, tmp_path):
    url = push_dataset(augment_output(tmp_path / "bbc"), "augmented", token=TOKEN)
    assert url == f"{hub.url}/datasets/user/augmented"
    assert "bbc-business/data.parquet" in hub.files("user/augmented")


@pytest.mark.parametrize("private, sent", [(None, None), (True, "private"), (False, "public")])
def test_a_new_repo_has_the_owners_default_visibility_unless_asked(hub, tmp_path, private, sent):
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, **({} if private is None else {"private": private}))
    assert hub.created[-1].get("visibility") == sent and hub.created[-1].get("private") in (None, private)


def test_private_is_refused_for_an_existing_public_repo_rather_than_uploading_in_public(hub, tmp_path):
    from hf_ipt import publish_cli
    from hf_ipt.cli import UsageError

    hub.put(REPO, {"notes.md": "public"})
    bbc = augment_output(tmp_path / "bbc")
    with pytest.raises(UsageError, match=f"{REPO} exists and is public.*--private.*make it private on the Hub"):
        push_dataset(bbc, REPO, token=TOKEN, private=True)
    with pytest.raises(SystemExit) as exit_:
        publish_cli.main(["--output_dir", str(bbc), "--repo_id", REPO, "--token", TOKEN, "--private"])
    assert exit_.value.code == 2 and hub.files(REPO) == {"notes.md": b"public"}
    push_dataset(bbc, "my-org/secret", token=TOKEN, private=True)  # created private: pushed,
    push_dataset(bbc, "my-org/secret", token=TOKEN, private=True)  # and again, once it exists
    assert len(hub.commits) == 2 and ("dataset", "my-org/secret") in hub.private
    push_dataset(bbc, REPO, token=TOKEN)  # without the flag, an existing repo keeps its visibility
    assert "bbc-business/data.parquet" in hub.files(REPO)


@pytest.mark.parametrize("flags, sent", [([], None), (["--private"], "private"), (["--private", "false"], "public")])
def test_push_cli_private_flag(hub, tmp_path, flags, sent):
    from hf_ipt import publish_cli

    argv = ["--output_dir", str(augment_output(tmp_path / "bbc")), "--repo_id", REPO, "--token", TOKEN, *flags]
    assert publish_cli.main(argv) == 0
    assert hub.created[-1].get("visibility") == sent


def test_a_card_that_starts_with_a_blank_line_keeps_its_configs(hub, tmp_path):
    from huggingface_hub import HfApi, RepoCard

    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    readme = "\n" + hub.files(REPO)["README.md"].decode()  # edited by hand; the Hub reads it the same
    HfApi(token=TOKEN).upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=REPO,
                                   repo_type="dataset")
    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)
    configs = RepoCard(hub.files(REPO)["README.md"].decode()).data.to_dict()["configs"]
    assert sorted(c["config_name"] for c in configs) == ["bbc-business", "finance"]


def test_the_demo_pushes_its_dataset_and_its_model_without_checkpoints(hub, tmp_path, monkeypatch):
    from hf_ipt import demo

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "demo"
    augment_output(out / "augmented")
    (out / "model" / "checkpoint-2").mkdir(parents=True)
    (out / "model" / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (out / "model" / "config.json").write_text("{}")
    (out / "model" / "README.md").write_text("---\nlibrary_name: transformers\n---\n# model\n")
    cfg = demo.DemoConfig(output_dir=str(out), push=True, hub_dataset_id="demo-data", hub_model_id="demo-model")
    demo._push(cfg, out)
    assert "demo/data.parquet" in hub.files("user/demo-data")
    assert sorted(hub.files("user/demo-model", repo_type="model")) == ["README.md", "config.json"]


def test_paths_kept_out_of_cards_still_tell_corpora_apart_and_older_pushes_are_the_same_corpus(hub, tmp_path):
    """An older push recorded the full path and no location: the same output pushed again after the upgrade was
    refused as another corpus (its name is shown shortened now). A trailing slash gave another digest. A
    `domain_keywords` file, and an older config's paths rendered again in the card, were published in full."""
    private = "/home/alice/secret-project"
    old = augment_output(tmp_path / "old", corpus=f"{private}/news.jsonl")
    summary = json.loads((old / "summary.json").read_text())
    summary["synthesis"]["domain_keywords"] = f"{private}/kw.txt"
    (old / "summary.json").write_text(json.dumps(summary))
    # as an older hf_ipt pushed it: stats with the path in full, no location
    stats = {**publish.read_output(old), "corpus": f"{private}/news.jsonl", "corpus_location": None}
    stats["settings"] = {**stats["settings"], "domain_keywords": f"{private}/kw.txt",
                         "engine_kwargs": {"download_dir": f"{private}/cache"}}  # a mapping, as a job records it
    card = publish.render_dataset_card({"repo_id": REPO, "configs": [stats]})
    table = io.BytesIO()
    pq.write_table(pa.table({"text": ["x"]}), table)
    hub.put(REPO, {"README.md": card, "news/stats.json": json.dumps(stats), "news/data.parquet": table.getvalue()})
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)  # another config: news is rendered again
    card = hub.files(REPO)["README.md"].decode()
    assert private not in card and "`.../news.jsonl`" in card and "| domain_keywords | .../kw.txt |" in card
    assert "download_dir" in card and ".../cache" in card
    push_dataset(old, REPO, token=TOKEN)  # the same corpus: no flag needed
    # a path inside engine_kwargs (vLLM's download_dir) was published in full, as a mapping or a flag's JSON
    from hf_ipt.cards import public_value

    assert public_value(json.dumps({"download_dir": f"{private}/cache", "seed": 1})) == \
        '{"download_dir": ".../cache", "seed": 1}'
    assert public_value('{"enforce_eager": true}') == '{"enforce_eager": true}'  # no path: as written
    assert public_value([{"dir": "~/x/y"}, "{not json"]) == [{"dir": ".../y"}, "{not json"]
    again = augment_output(tmp_path / "again", corpus=f"{private}/news.jsonl/")  # a trailing slash, as typed
    push_dataset(again, REPO, token=TOKEN)
    pushed = hub.files(REPO)
    assert not [name for name, data in pushed.items() if name.endswith((".md", ".json")) and private.encode() in data]


def test_other_configs_files_read_through_globs_or_data_dir_are_never_replaced(hub, tmp_path):
    """`news/**/*.parquet` and `data_dir: news` read news/x.parquet too: `--overwrite` of config `news` deleted
    it from under config `legacy`. A union config reading hf_ipt's own files (`*/*.parquet`) is no owner."""
    from hf_ipt.cli import UsageError

    table = io.BytesIO()
    pq.write_table(pa.table({"text": ["x"]}), table)
    for legacy in ({"data_files": "news/**/*.parquet"}, {"data_dir": "news"}):
        repo = f"org/legacy-{len(hub.repos)}"
        card = "---\n" + yaml.safe_dump({"configs": [{"config_name": "legacy", **legacy}]}) + "---\n"
        hub.put(repo, {"README.md": card, "news/x.parquet": table.getvalue()})
        with pytest.raises(UsageError, match=r"folder news/ of .* holds data files of config 'legacy'"):
            push_dataset(augment_output(tmp_path / "n", corpus="news"), repo, token=TOKEN, overwrite=True)
        assert "news/x.parquet" in hub.files(repo)
    push_dataset(augment_output(tmp_path / "n", corpus="news"), REPO, token=TOKEN)
    card = hub.files(REPO)["README.md"].decode()
    meta = front_matter(card)
    meta["configs"].append({"config_name": "all", "data_files": "*/*.parquet"})
    hub.put(REPO, {"README.md": "---\n" + yaml.safe_dump(meta) + "---\n" + card.split("---\n", 2)[2]})
    push_dataset(augment_output(tmp_path / "n", corpus="news"), REPO, token=TOKEN)  # its own files: no refusal


def test_the_demo_pushed_again_as_full_weights_leaves_no_adapter_and_token_problems_are_usage_errors(
        hub, tmp_path, monkeypatch):
    """A demo pushed with --use_peft, then again without: the repo kept adapter_config.json beside the new
    model.safetensors, and `from_pretrained(repo)` loaded the base model with the stale adapter. No token, a
    wrong or a read-only one: a raw HfHubHTTPError after the whole run; now refused up front or named."""
    from hf_ipt import demo
    from hf_ipt.cli import UsageError

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "demo"
    augment_output(out / "augmented")
    (out / "model").mkdir(parents=True)
    (out / "model" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (out / "model" / "adapter_model.safetensors").write_bytes(b"adapter")
    cfg = demo.DemoConfig(output_dir=str(out), push=True, hub_dataset_id="demo-data", hub_model_id="demo-model")
    demo._push(cfg, out)
    hub.put("user/demo-model", {"notes.md": "the user's"}, repo_type="model")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (out / "model" / name).unlink()
    (out / "model" / "config.json").write_text("{}")
    (out / "model" / "model.safetensors").write_bytes(b"full weights")
    demo._push(cfg, out)
    assert sorted(hub.files("user/demo-model", repo_type="model")) == ["config.json", "model.safetensors", "notes.md"]

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UsageError, match=r"--push needs a Hub token: set HF_TOKEN or run `hf auth login`"):
        demo.DemoConfig(output_dir=str(out), push=True, hub_dataset_id="demo-data", hub_model_id="demo-model")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(UsageError, match=r"the Hub refused the token \(HTTP 401\) for .*demo-model.*write token"):
        demo._push(cfg, out)


def test_the_demo_pushes_an_adapter_on_the_hub_base_model_and_a_card_naming_its_repo(hub, tmp_path, monkeypatch):
    from hf_ipt import demo

    from .test_demo import demo_output, news_corpus

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "demo"
    cfg = demo_output(out, news_corpus(tmp_path / "news.jsonl"), push=True, use_peft=True,
                      hub_dataset_id="demo-data", hub_model_id="demo-model")
    local_base = str(tmp_path / "cache" / "SmolLM2-135M-Instruct")
    adapter = {"base_model_name_or_path": local_base, "peft_type": "LORA", "r": 8}
    (out / "model" / "adapter_config.json").write_text(json.dumps(adapter))
    demo._push(cfg, out)
    files = hub.files("user/demo-model", repo_type="model")
    pushed = json.loads(files["adapter_config.json"])
    assert pushed == {**adapter, "base_model_name_or_path": demo.SMOLLM2_HUB_ID}
    assert json.loads((out / "model" / "adapter_config.json").read_text()) == adapter  # still loads offline here
    card = files["README.md"].decode()
    assert card.count('from_pretrained("user/demo-model")') == 2  # the bare name as the Hub made it
    assert f"base_model: {demo.SMOLLM2_HUB_ID}" in card and local_base not in card
    assert card == (out / "model" / "README.md").read_text()


def test_the_same_demo_pushed_again_from_another_output_dir_replaces_its_config(hub, tmp_path, monkeypatch):
    from dataclasses import replace

    from hf_ipt import demo
    from hf_ipt.cli import UsageError

    from .test_demo import demo_output, news_corpus

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push = {"push": True, "hub_dataset_id": "demo-data", "hub_model_id": "demo-model"}
    corpus = news_corpus(tmp_path / "news.jsonl")
    for run in ("run1", "run2"):  # each run trains from its own work/train.jsonl
        demo._push(demo_output(tmp_path / run, corpus, **push), tmp_path / run)
    stats = json.loads(hub.files("user/demo-data")["demo/stats.json"])
    assert stats["corpus"] == ".../news.jsonl" and stats["docs"]["trained on"] == 9
    card = hub.files("user/demo-data")["README.md"].decode()
    assert "- **Corpus:** `.../news.jsonl`" in card and "train.jsonl" not in card
    # the user's folders are published nowhere, card, stats or the model's card
    pushed = {**hub.files("user/demo-data"), **hub.files("user/demo-model", repo_type="model")}
    leaked = {name: data.decode()[max(0, data.find(str(tmp_path).encode()) - 200):][:400] for name, data in pushed.items()
              if name.endswith((".md", ".json")) and str(tmp_path).encode() in data}
    assert not leaked, leaked

    other = demo_output(tmp_path / "other", news_corpus(tmp_path / "other.jsonl", prefix="Sport"), **push)
    commits = len(hub.commits)
    with pytest.raises(UsageError, match=r"holds corpus .*news.jsonl.*--hub_config_name NEW.*--hub_overwrite.*"
                                         r"The model is pushed \(user/demo-model\).*hf-ipt push --output_dir"):
        demo._push(other, tmp_path / "other")
    assert len(hub.commits) == commits + 1  # the model only
    demo._push(replace(other, hub_config_name="sport"), tmp_path / "other")  # beside it
    demo._push(replace(other, hub_overwrite=True), tmp_path / "other")  # or in its place
    pushed = hub.files("user/demo-data")
    assert json.loads(pushed["demo/stats.json"])["corpus"] == json.loads(pushed["sport/stats.json"])["corpus"]
    assert json.loads(pushed["demo/stats.json"])["corpus"] == ".../other.jsonl"


def test_persistent_server_errors_fail_after_max_attempts(hub, tmp_path):
    from huggingface_hub.errors import HfHubHTTPError

    hub.fail_next("commit", 500, times=publish.MAX_ATTEMPTS)
    with pytest.raises(HfHubHTTPError, match="500"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert hub.requests.count(("POST", f"/api/datasets/{REPO}/commit/main")) == publish.MAX_ATTEMPTS
    assert hub.files(REPO) == {}


def test_client_errors_are_not_retried(hub, tmp_path):
    from hf_ipt.cli import UsageError

    with pytest.raises(UsageError, match=r"refused the token \(HTTP 401\)"):  # the user's to fix: a usage error
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token="hf_wrong")
    assert hub.requests.count(("POST", "/api/repos/create")) == 1 and hub.repos == {}


@pytest.mark.parametrize("private", [False, True])
@pytest.mark.parametrize("token, status", [("hf_wrong", 401), (READ_TOKEN, 403)])
def test_a_token_that_cannot_write_to_an_existing_repo_is_a_usage_error(hub, tmp_path, token, status, private):
    """`create_repo(exist_ok=True)` lets the token through when it can read the existing repo: the refusal
    came at the commit, as a traceback (`HfHubHTTPError: Client error '401 Unauthorized'`)."""
    hub.put(REPO, {"notes.txt": "made by hand"}, private=private)
    before = hub.files(REPO)
    with pytest.raises(UsageError, match=rf"the Hub refused the token \(HTTP {status}\) for .*{REPO}.*give a "
                                         r"write token with access to it"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=token)
    assert hub.files(REPO) == before and not hub.commits


def test_token_never_in_logs_or_uploads(hub, tmp_path, caplog, capfd, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub then logs every request as curl
    hub_logger = logging.getLogger("huggingface_hub")
    hub_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="huggingface_hub"):
            hub.fail_next("commit", 503)  # the retry path logs too
            push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    finally:
        hub_logger.removeHandler(caplog.handler)
    out, err = capfd.readouterr()
    assert "curl -X POST" in caplog.text and "create_commit got HTTP 503" in caplog.text  # logs were captured
    assert TOKEN not in caplog.text + out + err
    assert all(TOKEN.encode() not in content for content in hub.files(REPO).values())


def test_push_refuses_a_card_that_would_contain_the_token(hub, tmp_path):
    with pytest.raises(ValueError, match="token appears in the card and stats"):
        push_dataset(augment_output(tmp_path / "x", corpus=f"leak-{TOKEN}"), REPO, token=TOKEN, config_name="x")
    assert hub.files(REPO) == {} and not hub.commits


def test_pushed_layout_loads_with_datasets(hub, tmp_path):
    import datasets

    push_dataset(augment_output(tmp_path / "bbc", n=3), REPO, token=TOKEN)
    push_dataset(job_output(tmp_path / "fin"), REPO, token=TOKEN)
    clone = hub.export(REPO, tmp_path / "clone")
    bbc = datasets.load_dataset(str(clone), "bbc-business", split="train", cache_dir=str(tmp_path / "cache"))
    fin = datasets.load_dataset(str(clone), "finance", split="train", cache_dir=str(tmp_path / "cache"))
    assert bbc["id"] == ["bbc-business:0", "bbc-business:1", "bbc-business:2"]
    assert sorted(fin["id"]) == [f"finance:{i}" for i in range(4)] and fin.features == features("templified")


def test_overwriting_a_config_push_to_hub_wrote_drops_its_dataset_info(hub, tmp_path):
    """`Dataset.push_to_hub` records features and split sizes per config (`dataset_info`); `load_dataset`
    checks the data against them, so the entry of the replaced config must not outlive its data."""
    import io

    import datasets

    def info(name: str, rows: int) -> str:
        return (f"- config_name: {name}\n  features:\n  - name: text\n    dtype: string\n  splits:\n  - name: train\n"
                f"    num_bytes: 100\n    num_examples: {rows}\n  download_size: 100\n  dataset_size: 100\n")

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["raw"] * 10}), buf)
    readme = ("---\ndataset_info:\n" + info("bbc-business", 10) + info("other", 5) + "configs:\n"
              "- config_name: bbc-business\n  data_files:\n  - split: train\n    path: bbc-business/train-*\n---\n")
    hub.put(REPO, {"README.md": readme, "bbc-business/train-00000-of-00001.parquet": buf.getvalue()})
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, overwrite=True)
    meta = front_matter(hub.files(REPO)["README.md"].decode())
    assert [entry["config_name"] for entry in meta["dataset_info"]] == ["other"]  # another config's entry stays
    clone = hub.export(REPO, tmp_path / "clone")
    bbc = datasets.load_dataset(str(clone), "bbc-business", split="train", cache_dir=str(tmp_path / "cache"))
    assert bbc["id"] == ["bbc-business:0", "bbc-business:1", "bbc-business:2"]


# ---------------------------------------------------------------------------- the command


def test_push_help():
    out = hf_ipt("push", "--help")
    assert out.returncode == 0 and "--repo_id" in out.stdout and "--config_name" in out.stdout
    assert "--overwrite" in out.stdout
    assert "push" in hf_ipt("--help").stdout


def test_cli_push_end_to_end(tmp_path):
    output = augment_output(tmp_path / "bbc")
    with FakeHub(token=TOKEN, read_token=READ_TOKEN) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": TOKEN}
        out = hf_ipt("push", "--output_dir", str(output), "--repo_id", REPO, env=env)
        assert out.returncode == 0, out.stderr
        assert f"-> {hub.url}/datasets/{REPO}" in out.stdout
        assert sorted(hub.files(REPO)) == ["README.md", "bbc-business/data.parquet", "bbc-business/stats.json"]
        # hf_ipt's progress line, not one line per HTTP request (the client logs them at INFO)
        assert "hf_ipt push: config 'bbc-business', 1 data files (0 stale removed)" in out.stderr
        assert "HTTP Request" not in out.stderr and hub.url not in out.stderr
        # a read token on the repo it can read: the documented usage error (exit 2), not a traceback
        refused = hf_ipt("push", "--output_dir", str(output), "--repo_id", REPO, env={**env, "HF_TOKEN": READ_TOKEN})
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "hf-ipt push: error: the Hub refused the token (HTTP 403)" in refused.stderr
        assert "give a write token" in refused.stderr and len(hub.commits) == 1
    assert TOKEN not in out.stdout + out.stderr


def test_parquet_files_no_push_listed_are_refused_or_removed_with_overwrite(hub, tmp_path):
    """A repo made by `Dataset.push_to_hub` has `data/train-...parquet`; a job over `data/*.jsonl`
    named config `data` (as one over `data/*.jsonl` derives it), whose `data/*.parquet` glob would
    serve the foreign rows with ours."""
    hub.put(REPO, {"data/train-00000-of-00001.parquet": b"PAR1 foreign", "data/notes.txt": "kept"})
    job = job_output(tmp_path / "fin", corpus="data/*.jsonl")
    with pytest.raises(ValueError, match=r"folder data/ .* holds Parquet files that no hf_ipt push .* listed, such "
                                         r"as 'data/train-00000-of-00001.parquet'.*--overwrite"):
        push_dataset(job, REPO, token=TOKEN, config_name="data")
    push_dataset(job, REPO, token=TOKEN, config_name="data", overwrite=True)
    files = hub.files(REPO)
    assert sorted(f for f in files if f.endswith(".parquet")) == ["data/00000.parquet", "data/00001.parquet"]
    assert "data/notes.txt" in files  # not served by the config: left alone
    # An earlier hf_ipt push's own files are replaced without a flag, as before.
    push_dataset(job_output(tmp_path / "fin1", corpus="data/*.jsonl", shards=1), REPO, token=TOKEN, config_name="data")
    assert sorted(f for f in hub.files(REPO) if f.endswith(".parquet")) == ["data/00000.parquet"]


def test_a_damaged_output_or_a_missing_token_stops_before_the_hub(hub, tmp_path, monkeypatch):
    from hf_ipt.cli import UsageError

    missing = job_output(tmp_path / "missing")
    (missing / "data" / "00001.parquet").unlink()
    with pytest.raises(UsageError, match="00001.parquet is missing or not a readable Parquet file"):
        push_dataset(missing, REPO, token=TOKEN)
    cut = job_output(tmp_path / "cut")
    with open(cut / "data" / "00000.parquet", "r+b") as f:
        f.truncate(100)
    with pytest.raises(UsageError, match="not a readable Parquet file"):
        push_dataset(cut, REPO, token=TOKEN)
    short = augment_output(tmp_path / "short")
    (short / "summary.json").write_text(json.dumps({**json.loads((short / "summary.json").read_text()), "rows": 5}))
    with pytest.raises(UsageError, match="hold 3 rows, its record says 5"):
        push_dataset(short, REPO, token=TOKEN)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UsageError, match="no Hub token: set HF_TOKEN"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO)
    with pytest.raises(UsageError, match=r"the Hub refused the token \(HTTP 401\)"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token="hf_wrong")
    assert ("dataset", REPO) not in hub.repos  # the refusals before the token's came before any request


@pytest.mark.parametrize("command", ["synthesize", "augment"])
def test_an_output_with_no_rows_is_refused_before_the_hub(hub, tmp_path, command):
    """Every document rejected: the output has no row, and the config pushed from it failed to load
    ("Instruction 'train' corresponds to no data!")."""
    from hf_ipt.augment_cli import main as augment
    from hf_ipt.jobs import JobConfig, run_job

    corpus = tmp_path / "empty.jsonl"
    corpus.write_text(json.dumps({"text": "   "}) + "\n" + json.dumps({"text": ""}) + "\n")
    out = tmp_path / "out"
    if command == "synthesize":
        run_job(JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=1), progress=False)
        where = rf"{out}/rejects.jsonl lists each rejected document"
    else:
        augment(["--corpus", str(corpus), "--output_dir", str(out)])
        where = rf"`rejects` in {out}/summary.json counts the rejected documents"
    assert publish.output_record(str(out))[0]["rows"] == 0
    with pytest.raises(UsageError, match=rf"{out} holds no rows: a config with no data cannot be loaded .*{where}"):
        push_dataset(out, REPO, token=TOKEN)
    assert hub.repos == {}


def test_a_folder_of_other_parquet_data_is_refused_before_the_hub(hub, tmp_path):
    from hf_ipt.cli import UsageError

    raw = tmp_path / "raw"  # the raw corpus folder given instead of the synthesis output
    (raw / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["0"], "text": ["A raw document."]}), raw / "data" / "train-00000.parquet")
    with pytest.raises(UsageError, match=r"train-00000.parquet has columns \['id', 'text'\], not .*\(templified "
                                         r"output\) or .*\(pairs output\): it is not hf_ipt output"):
        push_dataset(raw, REPO, token=TOKEN)
    mixed = augment_output(tmp_path / "mixed")  # templified rows, a summary that records pairs output
    summary = json.loads((mixed / "summary.json").read_text())
    (mixed / "summary.json").write_text(json.dumps({**summary, "synthesis": {**summary["synthesis"],
                                                                             "output": "pairs"}}))
    with pytest.raises(UsageError, match=r"data.parquet has columns .*, not \['context', .*\(pairs output\):"):
        push_dataset(mixed, REPO, token=TOKEN)
    assert hub.repos == {}


def test_the_cards_load_snippet_names_the_branch_it_was_pushed_to(hub, tmp_path):
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision="dev")
    card = hub.files(REPO, "dev")["README.md"].decode()
    assert f'load_dataset("{REPO}", "bbc-business", split="train", revision=\'dev\')' in card
    push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN)
    assert f'load_dataset("{REPO}", "bbc-business", split="train")\n' in hub.files(REPO)["README.md"].decode()


def test_push_to_a_pull_request_commits_to_it_without_making_a_branch(hub, tmp_path):
    """`refs/pr/N` takes commits (`create_commit(revision="refs/pr/N")`), but `create_branch` refuses it
    (HTTP 400): the push failed before committing anything."""
    hub.put(REPO, {"notes.txt": "made by hand"})
    ref = hub.open_pr(REPO)
    url = push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision=ref)
    assert url == f"{hub.url}/datasets/{REPO}/discussions/1"
    assert "bbc-business/data.parquet" in hub.files(REPO, revision=ref) and "bbc-business/stats.json" not in hub.files(REPO)
    assert not any(method == "POST" and "/branch/" in path for method, path in hub.requests)
    # merged, the card is main's: its load snippet names no pull request
    assert 'split="train")\n' in hub.files(REPO, revision=ref)["README.md"].decode()
    with pytest.raises(UsageError, match=r"`revision` 'refs/pr/7': .* has no such pull request"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision="refs/pr/7")


@pytest.mark.parametrize("kind", ["tag", "sha", "ref"])
def test_push_to_a_tag_or_a_commit_is_refused_before_anything_changes(hub, tmp_path, kind):
    sha = hub.put(REPO, {"notes.txt": "made by hand"})
    hub.tag(REPO, "v1.0")
    revision, message = {"tag": ("v1.0", "is a tag of"), "sha": (sha, "is a commit sha"),
                         "ref": ("refs/convert/parquet", "is not a branch name nor refs/pr/N")}[kind]
    with pytest.raises(UsageError, match=f"`revision` '{revision}' {message}.*pass a branch name"):
        push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision=revision)
    assert sorted(b for b in hub.repos[("dataset", REPO)]) == ["main"] and not hub.commits


def test_the_url_of_a_branch_with_a_slash_is_the_hubs(hub, tmp_path):
    url = push_dataset(augment_output(tmp_path / "bbc"), REPO, token=TOKEN, revision="exp/bbc")
    assert url == f"{hub.url}/datasets/{REPO}/tree/exp%2Fbbc"
    assert "bbc-business/data.parquet" in hub.files(REPO, revision="exp/bbc")


def test_an_augment_stopped_at_max_docs_says_it_is_a_sample(hub, tmp_path):
    """`hf-ipt augment --max_docs N` wrote N rows that the summary, and the card pushed from it, presented as
    the whole corpus."""
    from .test_builder import write_jsonl

    corpus = str(write_jsonl(tmp_path / "news.jsonl", 6))
    out = hf_ipt("augment", "--corpus", corpus, "--output_dir", str(tmp_path / "few"), "--max_docs", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "a sample: stopped at --max_docs 2" in out.stdout
    # the rule miner read its window of 6 ahead of the 2 rows: said, so 4 documents do not look lost
    assert "(6 documents read, up to a window past the last row, none rejected;" in out.stdout
    summary = json.loads((tmp_path / "few" / "summary.json").read_text())
    assert (summary["rows"], summary["max_docs"], summary["sample"]) == (2, 2, True)
    push_dataset(tmp_path / "few", REPO, token=TOKEN)
    card = hub.files(REPO)["README.md"].decode()
    assert "| `news` | `rules` | n/a (mined text by text) | templified | 2 (sample) |" in card
    assert "- **Sample:** the first 2 rows only (`hf-ipt augment --max_docs 2`), not the whole corpus" in card

    out = hf_ipt("augment", "--corpus", corpus, "--output_dir", str(tmp_path / "all"), "--max_docs", "100")
    assert out.returncode == 0 and "sample" not in out.stdout  # the corpus ended first: all of it
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["sample"] is False
