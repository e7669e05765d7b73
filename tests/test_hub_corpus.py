"""A raw corpus on the Hub (``corpus="org/name"``), read through the real client stack against the fake Hub.

`datasets.load_dataset_builder` resolves the split's data files to ``hf://datasets/org/name@<commit>/...``
and `HfFileSystem` lists and reads them (tree, paths-info, ranged resolve), exactly as against
huggingface.co with ``HF_ENDPOINT`` set; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hf_ipt  # noqa: F401  (registers hf_ipt/augmented)
from hf_ipt.augment import SynthesisConfig
from hf_ipt.builder import load_augmented
from hf_ipt.cli import MissingFileError, UsageError
from hf_ipt.corpus import CorpusConfig, iter_shard, make_shards, read_file
from hf_ipt.jobs import JobConfig, run_job
from hf_ipt.synthesize_cli import main as synthesize_main

from .fake_hub import FakeHub
from .test_builder import doc
from .test_jobs import NO_FILTERS, manifest_of, output_rows

REPO = "org/news"
TOKEN = "hf_fakeTOKEN0123456789secret"
TRAIN = ["data/train-00000-of-00002.jsonl", "data/train-00001-of-00002.jsonl"]


@pytest.fixture
def hub(monkeypatch, tmp_path_factory):
    """A fake Hub, with huggingface_hub AND datasets pointed at it (conftest keeps both offline otherwise).
    Its downloads go to a cache of the test's own: offline, the tests' shared cache must not hold its repos."""
    from huggingface_hub import HfFileSystem, constants

    with FakeHub() as fake:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("fake_hub_cache")))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
        # datasets reads HF_HUB_OFFLINE / HF_ENDPOINT into its own config at import time
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", fake.url)
        monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", fake.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
        # hosts the fake cannot stand in for: download counts (s3.amazonaws.com), the dataset viewer
        # (datasets-server.<endpoint host>); datasets treats both as best effort
        monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)
        monkeypatch.setattr(datasets.config, "USE_PARQUET_EXPORT", False)
        try:
            yield fake
        finally:
            HfFileSystem.clear_instance_cache()  # listings cached per endpoint; a later hub may reuse the port


def jsonl(texts: list[str], column: str = "text") -> bytes:
    return "".join(json.dumps({column: t, "n": i}) + "\n" for i, t in enumerate(texts)).encode()


def parquet(texts: list[str], column: str = "content") -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({column: texts, "n": list(range(len(texts)))}), buffer, row_group_size=2)
    return buffer.getvalue()


def news(hub: FakeHub) -> str:
    """`REPO` with two train files of 3 documents each (doc 0-2, doc 10-12) and a test file; its commit."""
    return hub.put(REPO, {TRAIN[0]: jsonl([doc(i) for i in range(3)]),
                          TRAIN[1]: jsonl([doc(i) for i in range(10, 13)]),
                          "data/test-00000-of-00001.jsonl": jsonl([doc(99)])})


EXPECTED = {f"train-0000{k}-of-00002.jsonl:{i}": doc(10 * k + i) for k in range(2) for i in range(3)}


def hf_url(commit: str, path: str, repo: str = REPO) -> str:
    return f"hf://datasets/{repo}@{commit}/{path}"


# ---------------------------------------------------------------------------- the fake, as the client sees it


def test_fake_hub_answers_listings_and_infos_as_the_client_parses_them(hub):
    from huggingface_hub import HfApi, HfFileSystem
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    first = news(hub)
    second = hub.put(REPO, {"README.md": "# News\n"}, title="Add card")
    api = HfApi()
    assert api.dataset_info(REPO).sha == second and api.dataset_info(REPO, revision=first).sha == first
    info = api.dataset_info(REPO, expand=["sha", "lastModified"])
    assert (info.sha, info.siblings, info.private) == (second, None, None)  # only what `expand` asked for
    top = list(api.list_repo_tree(REPO, expand=True, repo_type="dataset"))
    assert [(type(e), e.path) for e in top] == [(RepoFolder, "data"), (RepoFile, "README.md")]
    assert top[0].last_commit.oid == first and top[1].last_commit.title == "Add card"
    every = {e.path for e in api.list_repo_tree(REPO, recursive=True, repo_type="dataset")}
    assert every == {"data", "README.md", *TRAIN, "data/test-00000-of-00001.jsonl"}
    found = api.get_paths_info(REPO, [TRAIN[0], "data", "missing.txt"], repo_type="dataset", revision=first)
    assert [(e.path, getattr(e, "size", None)) for e in found] == [(TRAIN[0], len(hub.files(REPO)[TRAIN[0]])),
                                                                  ("data", None)]
    fs = HfFileSystem()
    assert fs.ls(f"datasets/{REPO}@{first}", detail=False) == [f"datasets/{REPO}@{first}/data"]
    with fs.open(f"datasets/{REPO}/{TRAIN[1]}", "rb", block_size=16) as f:
        f.seek(3)
        assert f.read(20) == hub.files(REPO)[TRAIN[1]][3:23]
    assert [(p, r[:8]) for p, r in hub.ranges] == [(f"/datasets/{REPO}/resolve/main/{TRAIN[1]}", "bytes=3-")]


# ---------------------------------------------------------------------------- corpus files and reader


def test_split_files_are_pinned_to_the_commit_and_read_in_shards(hub):
    commit = news(hub)
    files = CorpusConfig(corpus=REPO, corpus_split="train").files()
    assert files == [hf_url(commit, path) for path in TRAIN]
    assert CorpusConfig(corpus=REPO, corpus_split="test").files() == [
        hf_url(commit, "data/test-00000-of-00001.jsonl")]
    shards = make_shards(files, 4)  # 2 files in 2 parts each
    docs = [d for shard in shards for d in iter_shard(shard)]
    assert sorted((d.id, d.text) for d in docs) == sorted(EXPECTED.items())
    assert [d.id for d in iter_shard(shards[1])] == ["train-00000-of-00002.jsonl:1"]
    assert all(d.reject is None for d in docs)


def test_named_parquet_config_read_with_range_requests(hub):
    readme = ("---\nconfigs:\n- config_name: business\n  data_files:\n  - split: train\n"
              "    path: business/train-*.parquet\n- config_name: sport\n  data_files:\n  - split: train\n"
              "    path: sport/*.parquet\n---\n# News\n")
    commit = hub.put(REPO, {"README.md": readme, "business/train-00000.parquet": parquet([doc(i) for i in range(5)]),
                            "sport/train-00000.parquet": parquet([doc(50)])})
    config = CorpusConfig(corpus=REPO, corpus_config="business", text_column="content")
    files = config.files()
    assert files == [hf_url(commit, "business/train-00000.parquet")]
    assert [(d.id, d.text) for d in iter_shard(make_shards(files, 1)[0], "content")] == [
        (f"train-00000.parquet:{i}", doc(i)) for i in range(5)]
    ranged = [r for p, r in hub.ranges if p == f"/datasets/{REPO}/resolve/{commit}/business/train-00000.parquet"]
    assert ranged, "HfFileSystem reads Parquet by ranges (footer, row groups) at the pinned commit"
    with pytest.raises(ValueError, match="`corpus_split` 'validation' not found"):
        CorpusConfig(corpus=REPO, corpus_config="business", corpus_split="validation").files()


def test_files_in_several_folders_get_relative_ids_without_the_commit(hub):
    readme = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*/train.jsonl\n---\n"
    commit = hub.put(REPO, {"README.md": readme, "data/en/train.jsonl": jsonl(["English one.", "English two."]),
                            "data/fr/train.jsonl": jsonl(["Un texte."])})
    files = CorpusConfig(corpus=REPO).files()
    assert files == [hf_url(commit, "data/en/train.jsonl"), hf_url(commit, "data/fr/train.jsonl")]
    docs = [d for shard in make_shards(files, 2) for d in iter_shard(shard)]
    assert [(d.id, d.text) for d in docs] == [("en/train.jsonl:0", "English one."), ("en/train.jsonl:1", "English two."),
                                             ("fr/train.jsonl:0", "Un texte.")]


def test_corpus_revision_pins_a_commit_or_tag(hub):
    first = news(hub)
    hub.tag(REPO, "v1")
    second = hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})
    assert second != first
    for revision in (first, "v1"):
        config = CorpusConfig(corpus=REPO, corpus_revision=revision)
        files = config.files()
        assert files == [hf_url(first, path) for path in TRAIN]
        assert {d.id: d.text for s in make_shards(files, 2) for d in iter_shard(s)} == EXPECTED
    latest = CorpusConfig(corpus=REPO).files()
    assert latest == [hf_url(second, path) for path in TRAIN]
    assert [d.text for d in iter_shard(make_shards(latest, 2)[1])] == [doc(20)]


# ---------------------------------------------------------------------------- builder


def test_load_augmented_streams_every_document_once(hub):
    news(hub)
    ds = load_augmented(REPO, streaming=True, split="train", corpus_split="train", text_column="text",
                        synthesizer="rules", output="pairs", num_shards=3)
    rows = list(ds)
    assert sorted(r["id"] for r in rows) == sorted(EXPECTED)
    assert {r["id"]: r["context"] for r in rows} == EXPECTED
    assert sum(len(r["pairs"]) for r in rows) > 0


def test_load_dataset_hf_ipt_augmented_templified(hub):
    commit = news(hub)
    ds = datasets.load_dataset("hf_ipt/augmented", corpus=REPO, corpus_revision=commit, synthesizer="rules",
                               streaming=True, split="train")
    rows = list(ds)
    assert sorted(d for r in rows for d in r["doc_ids"]) == sorted(EXPECTED)
    assert {r["corpus"] for r in rows} == {REPO}
    for r in rows:
        assert all(EXPECTED[d] in r["text"] for d in r["doc_ids"])


# ---------------------------------------------------------------------------- resumable job


def test_job_on_a_hub_corpus_resumes_and_keeps_its_snapshot_when_the_corpus_moves(hub, tmp_path, monkeypatch,
                                                                                  caplog):
    import hf_ipt.jobs

    first = news(hub)
    job = JobConfig(corpus=REPO, output_dir=str(tmp_path / "o"), num_shards=3)
    synthesis = SynthesisConfig(output="pairs")
    assert run_job(job, synthesis, NO_FILTERS, rank=0, world_size=3, progress=False) is None  # unit 0 only
    spec = json.loads((tmp_path / "o" / "job.json").read_text())
    assert sorted({f for u in spec["units"] for f in u["files"]}) == [hf_url(first, path) for path in TRAIN]

    ran, synthesize_unit = [], hf_ipt.jobs.synthesize_unit
    monkeypatch.setattr(hf_ipt.jobs, "synthesize_unit", lambda job, index, *a, **k: (
        ran.append(index), synthesize_unit(job, index, *a, **k)))
    manifest = run_job(job, synthesis, NO_FILTERS, progress=False)  # job.json matches: resumes
    assert ran == [1, 2]
    assert {r["id"]: r["context"] for r in output_rows(tmp_path / "o")} == EXPECTED
    assert manifest["docs"] == {"read": 6, "rejected": 0, "kept": 6} and manifest["corpus"] == REPO
    assert run_job(job, synthesis, NO_FILTERS, progress=False) == manifest and ran == [1, 2]

    changed = jsonl([doc(i) for i in range(14, 17)])  # "report 14" for "report 10"...: the same size
    assert changed != hub.files(REPO)[TRAIN[1]] and len(changed) == len(hub.files(REPO)[TRAIN[1]])
    hub.put(REPO, {TRAIN[1]: changed})  # job.json has no sizes of remote files: the commit in their paths tells
    # A job reads one fixed corpus: an unfinished job resumes on the commit it started with.
    (tmp_path / "o" / "manifest.json").unlink()
    (tmp_path / "o" / "pairs" / "00001.json").unlink()
    caplog.set_level("WARNING", logger="hf_ipt")
    ran.clear()
    assert run_job(job, synthesis, NO_FILTERS, progress=False)["docs"] == manifest["docs"] and ran == [1]
    assert f"goes on with commit {first}" in caplog.text
    assert {r["id"]: r["context"] for r in output_rows(tmp_path / "o")} == EXPECTED  # not the new content
    other = JobConfig(corpus=REPO, output_dir=str(tmp_path / "o"), num_shards=2)
    with pytest.raises(UsageError, match="holds a different job.*num_shards 3 -> 2"):  # other settings: refused
        run_job(other, synthesis, NO_FILTERS, progress=False)


def test_job_pinned_to_a_commit_resumes_after_the_branch_moved(hub, tmp_path):
    first = news(hub)
    job = JobConfig(corpus=REPO, corpus_revision=first, output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, progress=False)
    hub.put(REPO, {TRAIN[0]: jsonl([doc(30)])})
    assert run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, progress=False) == manifest
    assert {r["id"]: r["context"] for r in output_rows(tmp_path / "o")} == EXPECTED


def test_synthesize_cli_on_a_hub_corpus(hub, tmp_path, capsys):
    news(hub)
    out = tmp_path / "o"
    args = ["--corpus", REPO, "--corpus_split", "train", "--output_dir", str(out), "--num_shards", "2",
            "--output", "pairs"]
    assert synthesize_main(args) == 0
    assert "from 6 documents" in capsys.readouterr().out
    assert {r["id"]: r["context"] for r in output_rows(out)} == EXPECTED
    assert manifest_of(out)["settings"]["job"]["corpus"] == REPO


# ---------------------------------------------------------------------------- checks and private corpora


def test_wrong_text_column_of_a_hub_corpus_stops_before_any_work(hub, tmp_path):
    news(hub)
    with pytest.raises(UsageError, match="`text_column` 'body' is in none of the first 3 JSON objects"):
        CorpusConfig(corpus=REPO, text_column="body").files()
    with pytest.raises(UsageError, match="`text_column` 'body'"):
        run_job(JobConfig(corpus=REPO, text_column="body", output_dir=str(tmp_path / "o")), progress=False)
    assert not (tmp_path / "o" / "job.json").exists()
    before = len(hub.requests)
    hub.put("org/big", {f"data/train-{k:05d}.parquet": parquet([doc(k)]) for k in range(3)})
    with pytest.raises(UsageError, match="`text_column` 'body' not in .*train-00000.parquet"):
        CorpusConfig(corpus="org/big", text_column="body").files()
    read = {p for m, p in hub.requests[before:] if m == "GET" and p.endswith(".parquet")}
    assert [p.rsplit("/", 1)[1] for p in read] == ["train-00000.parquet"]  # only the first file's footer


def test_private_hub_corpus_is_read_with_the_token(hub):
    hub.token = TOKEN
    commit = hub.put("org/secret", {"data/train.jsonl": jsonl(["Secret one.", "Secret two."])}, private=True)
    files = CorpusConfig(corpus="org/secret").files(token=TOKEN)  # lists and checks with the token
    assert files == [hf_url(commit, "data/train.jsonl", "org/secret")]
    assert [(d.id, d.text) for d in iter_shard(make_shards(files, 1)[0], token=TOKEN)] == [
        ("train.jsonl:0", "Secret one."), ("train.jsonl:1", "Secret two.")]
    with pytest.raises(FileNotFoundError):  # no token, no saved login: the Hub says "not found"
        list(read_file(files[0]))


def test_load_augmented_of_a_private_hub_corpus_with_a_token(hub):
    hub.token = TOKEN
    hub.put("org/secret", {"data/train.jsonl": jsonl(["Secret one."])}, private=True)
    rows = list(load_augmented("org/secret", token=TOKEN, streaming=True, output="pairs"))
    assert [r["id"] for r in rows] == ["train.jsonl:0"]


def test_the_builder_reads_the_commit_its_cache_key_names(hub, tmp_path):
    from hf_ipt.builder import AugmentedBuilder

    news(hub)
    builder = AugmentedBuilder(corpus=REPO, output="pairs", cache_dir=str(tmp_path / "cache"))
    hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})  # a commit lands after the key was made
    assert {r["id"]: r["context"] for r in builder.as_streaming_dataset(split="train")} == EXPECTED
    builder.download_and_prepare()
    assert {r["id"]: r["context"] for r in builder.as_dataset(split="train")} == EXPECTED


def test_non_streaming_load_sees_a_new_commit_of_an_unpinned_hub_corpus(hub, tmp_path):
    news(hub)
    rows = load_augmented(REPO, output="pairs", cache_dir=str(tmp_path / "cache"))
    assert {r["id"]: r["context"] for r in rows} == EXPECTED
    hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})
    rows = load_augmented(REPO, output="pairs", cache_dir=str(tmp_path / "cache"))
    assert sorted(r["id"] for r in rows) == sorted(list(EXPECTED)[:3] + ["train-00001-of-00002.jsonl:0"])


def test_cache_key_lists_a_private_corpus_with_the_token_and_not_a_corpus_pinned_to_a_commit(hub, caplog,
                                                                                         monkeypatch):
    from hf_ipt.builder import AugmentedBuilder

    keyed = []  # the corpus files each config's key was made of
    original = datasets.BuilderConfig.create_config_id

    def spy(self, config_kwargs, custom_features=None):
        keyed.append(config_kwargs.get("corpus_files"))
        return original(self, config_kwargs, custom_features)

    monkeypatch.setattr(datasets.BuilderConfig, "create_config_id", spy)
    hub.token = TOKEN
    commit = hub.put("org/secret", {"data/train.jsonl": jsonl(["Secret one."])}, private=True)
    listed = AugmentedBuilder(corpus="org/secret", token=TOKEN)
    assert keyed.pop() == [hf_url(commit, "data/train.jsonl", "org/secret")]  # listed with the builder's token

    before = len(hub.requests)
    with caplog.at_level("WARNING", logger="hf_ipt.builder"):
        pinned = AugmentedBuilder(corpus="org/secret", corpus_revision=commit, token=TOKEN)
    assert keyed.pop() is None and len(hub.requests) == before  # a commit sha is key enough: no request
    assert not caplog.records

    with caplog.at_level("WARNING", logger="hf_ipt.builder"):
        blind = AugmentedBuilder(corpus="org/secret")  # no token, no saved login: the listing fails
    assert keyed.pop() is None
    assert "could not list the files of corpus 'org/secret' for the cache key" in caplog.text
    assert len({listed.config_id, pinned.config_id, blind.config_id}) == 3


def test_a_remote_json_array_is_not_downloaded_to_check_its_text_column(hub):
    """A top-level JSON array is read whole: its column is checked as it streams, not up front."""
    texts = [doc(i) + " " + "filler " * 300 for i in range(6000)]  # ~15 MB: several read blocks (5 MB)
    content = json.dumps([{"text": t} for t in texts]).encode()
    hub.put("org/array", {"data/train.json": content})
    before, ranged = len(hub.requests), len(hub.ranges)
    files = CorpusConfig(corpus="org/array").files()
    reads = [p for m, p in hub.requests[before:] if m == "GET" and p.endswith("/data/train.json")]
    first_block = [r for _, r in hub.ranges[ranged:]]
    assert len(reads) == len(first_block) == 1 and first_block[0].startswith("bytes=0-")  # one block: an array?
    assert next(iter_shard(make_shards(files, 1)[0])).text == texts[0]  # read whole when it streams


# ---------------------------------------------------------------------------- files by hf:// URL

URL = f"hf://datasets/{REPO}"


def test_url_globs_folders_and_revisions_resolve_to_files_at_the_commit(hub):
    first = news(hub)
    hub.tag(REPO, "v1")
    second = hub.put(REPO, {TRAIN[1]: jsonl([doc(20)]), "README.md": "# News\n"})
    train = [hf_url(second, path) for path in TRAIN]
    assert CorpusConfig(corpus=f"{URL}/data/train-*.jsonl").files() == train
    assert CorpusConfig(corpus=f"{URL}/**/train-*.jsonl").files() == train
    assert CorpusConfig(corpus=f"{URL}/{TRAIN[0]}").files() == train[:1]
    every = train + [hf_url(second, "data/test-00000-of-00001.jsonl")]
    assert CorpusConfig(corpus=f"{URL}/data").files() == sorted(every)  # a folder: its supported files
    assert CorpusConfig(corpus=URL).files() == sorted(every)  # README.md is not a corpus file
    pinned = [hf_url(first, path) for path in TRAIN]
    assert CorpusConfig(corpus=f"{URL}@v1/data/train-*.jsonl").files() == pinned
    assert CorpusConfig(corpus=f"{URL}/data/train-*.jsonl", corpus_revision="v1").files() == pinned
    config = CorpusConfig(corpus=f"{URL}@{first}/data/train-*.jsonl")
    assert config.files() == pinned and config.pinned and config.corpus_name == REPO
    assert {d.id: d.text for s in make_shards(pinned, 2) for d in iter_shard(s)} == EXPECTED
    assert not CorpusConfig(corpus=f"{URL}/data/train-*.jsonl").pinned
    names = {f"{URL}/finance/*.jsonl": f"{REPO}/finance", f"{URL}@refs/pr/1/data/x.jsonl": f"{REPO}/x.jsonl", URL: REPO,
             f"{URL}@feature%2Fx/*.parquet": REPO, f"{URL}/{TRAIN[0]}": f"{REPO}/{TRAIN[0].split('/')[1]}"}
    assert {url: CorpusConfig(corpus=url).corpus_name for url in names} == names


def test_url_mistakes_are_usage_errors(hub):
    news(hub)
    with pytest.raises(UsageError, match="matched no file in 'org/news' at 'main'"):
        CorpusConfig(corpus=f"{URL}/data/*.parquet").files()
    with pytest.raises(UsageError, match="matched unsupported files such as .*README.md"):
        hub.put(REPO, {"README.md": "# News\n"})
        CorpusConfig(corpus=f"{URL}/*.md").files()
    with pytest.raises(FileNotFoundError):  # a missing repo or revision
        CorpusConfig(corpus="hf://datasets/org/missing/*.jsonl").files()
    with pytest.raises(UsageError, match="matched no file .*a folder is read for its .txt, .jsonl"):
        CorpusConfig(corpus=f"{URL}/nothing").files()
    with pytest.raises(ValueError, match="revision is given twice: @main in .* and `corpus_revision` 'v2'"):
        CorpusConfig(corpus=f"{URL}@main/data/*.jsonl", corpus_revision="v2")
    with pytest.raises(UsageError, match="only URLs read are files of Hub dataset repos"):
        CorpusConfig(corpus="s3://bucket/data/*.jsonl")
    with pytest.raises(UsageError, match=r"for this repo: hf://datasets/org/news/<path or glob>, or the id 'org/news'"):
        CorpusConfig(corpus="https://huggingface.co/datasets/org/news/tree/main/data")
    with pytest.raises(UsageError, match="is not a Hub dataset URL"):
        CorpusConfig(corpus="hf://datasets/news")
    with pytest.raises(MissingFileError, match=r"revision 'feature' not found in dataset repo 'org/news'.*%2F-encoded"):
        CorpusConfig(corpus=f"{URL}@feature/x/data/*.jsonl").files()


def test_a_url_that_failed_is_looked_up_again(hub, monkeypatch):
    """HfFileSystem caches "not found" per instance: a repo (or token) that arrives later must be seen."""
    with pytest.raises(MissingFileError, match="no dataset repo 'org/later'.*a private repo needs a token"):
        CorpusConfig(corpus="hf://datasets/org/later/*.jsonl").files()
    commit = hub.put("org/later", {"a.jsonl": jsonl(["Now here."])})
    assert CorpusConfig(corpus="hf://datasets/org/later/*.jsonl").files() == [hf_url(commit, "a.jsonl", "org/later")]
    with pytest.raises(ValueError, match="names its files itself"):
        CorpusConfig(corpus=f"{URL}/data/*.jsonl", corpus_split="test")


def test_builder_and_job_on_a_url_corpus(hub, tmp_path, caplog):
    first = news(hub)
    pattern = f"{URL}/data/train-*.jsonl"
    rows = list(load_augmented(pattern, streaming=True, output="pairs", num_shards=3))
    assert {r["id"]: r["context"] for r in rows} == EXPECTED
    assert {r["corpus"] for r in rows} == {REPO}
    job = JobConfig(corpus=pattern, output_dir=str(tmp_path / "o"), num_shards=2)
    assert run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, rank=0, world_size=2, progress=False) is None
    hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})  # the branch moves: the job goes on with its commit
    caplog.set_level("WARNING", logger="hf_ipt")
    manifest = run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, progress=False)
    assert f"goes on with commit {first}" in caplog.text and manifest["docs"]["kept"] == 6
    assert {r["id"]: r["context"] for r in output_rows(tmp_path / "o")} == EXPECTED


def test_training_sources_by_url_are_checked_and_streamed(hub):
    from hf_ipt.training.checks import check_source
    from hf_ipt.training.data import load_rows

    news(hub)
    hub.put("org/general", {"qa/train-00000.parquet": parquet(["What is 2+2? 4"], column="question")})
    check_source("--domain_dataset", f"{URL}/data/train-*.jsonl", {"text": "--text_column"})
    with pytest.raises(UsageError, match="--general_dataset.*'answer'"):
        check_source("--general_dataset", "hf://datasets/org/general/qa/*.parquet",
                     {"question": None, "answer": None})
    with pytest.raises(UsageError, match="`--domain_dataset`.*matched no file"):
        check_source("--domain_dataset", f"{URL}/nothing/*.jsonl", {"text": None})
    with pytest.raises(UsageError, match="`--domain_dataset` 's3://b/x.jsonl': the only URLs"):
        check_source("--domain_dataset", "s3://b/x.jsonl", {"text": None})
    assert [r["text"] for r in load_rows(f"{URL}/data/train-*.jsonl")] == [doc(i) for i in (0, 1, 2, 10, 11, 12)]
    assert [r["question"] for r in load_rows("hf://datasets/org/general/qa/*.parquet")] == ["What is 2+2? 4"]


def test_job_on_a_branch_given_as_corpus_revision_resumes_on_its_first_commit(hub, tmp_path, caplog):
    news(hub)
    first = hub.put(REPO, dict(zip(TRAIN, (hub.files(REPO)[path] for path in TRAIN))), branch="dev")
    job = JobConfig(corpus=f"{URL}/data/train-*.jsonl", corpus_revision="dev", output_dir=str(tmp_path / "o"),
                    num_shards=2)
    assert run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, rank=0, world_size=2, progress=False) is None
    hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])}, branch="dev")
    caplog.set_level("WARNING", logger="hf_ipt")
    assert run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, progress=False)["docs"]["kept"] == 6
    assert f"goes on with commit {first}" in caplog.text


def test_remote_parquet_streams_without_fetching_every_row_group_first(hub):
    from hf_ipt.training.data import load_rows

    texts = [doc(i) + " " + "filler " * 400 for i in range(10000)]  # ~30 MB in 100 row groups; reads of
    buffer = io.BytesIO()                                               # 5 MB blocks: footer + first group
    pq.write_table(pa.table({"text": texts}), buffer, row_group_size=100, compression="none")
    hub.put("org/big", {"train.parquet": buffer.getvalue()})
    url = "hf://datasets/org/big/train.parquet"
    files = CorpusConfig(corpus=url).files()
    for first_row in (lambda: next(iter_shard(make_shards(files, 1)[0])).text,
                      lambda: next(iter(load_rows(url)))["text"]):
        before = len(hub.ranges)
        assert first_row() == texts[0]
        served = sum(int(b) - int(a) + 1 for _, r in hub.ranges[before:]
                     for a, b in [r.removeprefix("bytes=").split("-")])
        assert served < len(buffer.getvalue()) // 2, served


def test_check_source_leaves_a_remote_json_array_to_the_stream_and_cards_name_url_repos(hub):
    from hf_ipt.training.checks import check_source
    from hf_ipt.training.trainer import hub_datasets

    content = json.dumps([{"text": doc(i) + " " + "filler " * 300} for i in range(6000)]).encode()  # ~15 MB
    hub.put("org/array", {"train.json": content})
    before = len(hub.requests)
    check_source("--domain_dataset", "hf://datasets/org/array/train.json", {"text": None})
    assert len([p for m, p in hub.requests[before:] if m == "GET" and p.endswith("train.json")]) == 1
    assert hub_datasets(f"{URL}/data/*.jsonl", "org/general", f"{URL}@v1/x.jsonl", None) == [
        REPO, "org/general"]


def test_recipes_pin_url_sources_to_their_commit_before_training(hub):
    """The card and the resume check (hf_ipt_data_stream.json) record the commit: a resume after the
    branch moved finds another stream and is refused, instead of reading other data."""
    from hf_ipt.corpus import pin_hub_url
    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import ContinualPTConfig

    first = news(hub)
    general = hub.put("org/general", {"qa.jsonl": "".join(
        json.dumps({"question": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(3))})
    config = ContinualPTConfig(domain_dataset=f"{URL}/data/train-*.jsonl",
                               general_dataset=f"hf://datasets/org/general@{general}/qa.jsonl")
    check_data(config)
    assert config.domain_dataset == f"{URL}@{first}/data/train-*.jsonl"
    assert config.general_dataset == f"hf://datasets/org/general@{general}/qa.jsonl"  # already a commit
    hub.tag(REPO, "v1")
    second = hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})
    assert pin_hub_url(f"{URL}/data") == f"{URL}@{second}/data"
    assert pin_hub_url(f"{URL}@v1") == pin_hub_url(URL, revision="v1") == f"{URL}@{first}"


def test_recipes_pin_hub_dataset_ids_and_stream_the_pinned_snapshot(hub, monkeypatch, tmp_path, caplog):
    """A Hub id source is read at the commit it had when training started, also after the branch
    moves (a resume then finds another source and is refused); a typo fails before any model load."""
    from huggingface_hub import constants

    from hf_ipt.cli import HubUnreachableError
    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import ContinualPTConfig
    from hf_ipt.training.data import load_rows
    from hf_ipt.training.trainer import hub_datasets

    first = news(hub)
    config = ContinualPTConfig(domain_dataset=REPO)
    check_data(config)
    assert config.domain_dataset == f"{REPO}@{first}"
    hub.tag(REPO, "v1")
    second = hub.put(REPO, {TRAIN[1]: jsonl([doc(20)])})
    texts = [doc(i) for i in (0, 1, 2, 10, 11, 12)]
    assert [r["text"] for r in load_rows(config.domain_dataset)] == texts
    assert [r["text"] for r in load_rows(REPO)] == [doc(i) for i in (0, 1, 2, 20)]  # unpinned: the new commit
    tagged = ContinualPTConfig(domain_dataset=f"{REPO}@v1")
    check_data(tagged)
    assert tagged.domain_dataset == f"{REPO}@{first}"
    check_data(moved := ContinualPTConfig(domain_dataset=REPO))
    assert moved.domain_dataset == f"{REPO}@{second}"
    (tmp_path / "outputs" / "aug@v2").mkdir(parents=True)  # a local folder with '@' is no Hub repo
    monkeypatch.chdir(tmp_path)
    assert hub_datasets(config.domain_dataset, f"{REPO}@v1", "data/x@y.jsonl", "outputs/aug@v2") == [REPO]  # cards
    with pytest.raises(UsageError, match=r"`--domain_dataset` 'org/nwes': no dataset repo 'org/nwes'"):
        check_data(ContinualPTConfig(domain_dataset="org/nwes"))
    with pytest.raises(UsageError, match=r"`--domain_dataset` 'org/news@nope': revision 'nope' not found"):
        check_data(ContinualPTConfig(domain_dataset=f"{REPO}@nope"))
    hub.fail_next("info", 503)  # the Hub unreachable: read unpinned (the cache may serve it), with a warning
    check_data(unreachable := ContinualPTConfig(domain_dataset=REPO))
    assert unreachable.domain_dataset == REPO and "could not pin --domain_dataset 'org/news'" in caplog.text
    # offline, not in the HF cache: stopped here, before the model loads (it failed where it streamed)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    fix = ("`hf download org/news --repo-type dataset`, into the Hugging Face cache, which is read offline; or with "
           "`--local-dir DIR`, then give that folder or its files as `--domain_dataset`")
    with pytest.raises(HubUnreachableError, match=re.escape(
            "`--domain_dataset` 'org/news' is read from the Hub, which cannot be reached (offline mode: "
            f"HF_DATASETS_OFFLINE is set): unset HF_DATASETS_OFFLINE where the Hub is reachable, or download it there ({fix})")):
        check_data(ContinualPTConfig(domain_dataset=REPO))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(HubUnreachableError, match=re.escape("(offline mode: HF_HUB_OFFLINE is set)") + ".*" + re.escape(fix)):
        check_data(ContinualPTConfig(domain_dataset=REPO))


def test_a_hub_collection_is_pinned_and_downloaded_at_its_commit(hub):
    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import SynthesizerConfig
    from hf_ipt.training.synthesizer_data import collection_files

    def shard(context: str) -> bytes:
        return (json.dumps({"context": context, "QA_list": [{"Q": "Why?", "A": "Because."}]}) + "\n").encode()

    first = hub.put("org/collection", {"squad/shard/0.jsonl": shard("first")})
    config = SynthesizerConfig(collection="org/collection")
    check_data(config)
    assert config.collection == f"org/collection@{first}"
    hub.put("org/collection", {"squad/shard/0.jsonl": shard("second")})
    (path,) = collection_files(config.collection)["squad"]
    assert json.loads(Path(path).read_text(encoding="utf-8"))["context"] == "first"


def test_check_data_names_the_option_of_a_missing_url_source(hub):
    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import ContinualPTConfig

    config = ContinualPTConfig(domain_dataset="hf://datasets/org/missing/*.jsonl")
    with pytest.raises(UsageError, match=r"`--domain_dataset` 'hf://datasets/org/missing/\*.jsonl': no dataset repo") as info:
        check_data(config)
    assert "corpus_revision" not in str(info.value) and "token=" not in str(info.value)


# ---------------------------------------------------------------------------- a Hub synthesizer in the cache key

SYNTH = "org/synth"


def cached_snapshot(cache: Path, repo_id: str, commit: str, ref: str = "main") -> None:
    """What a download of `repo_id` at `commit` leaves in a Hugging Face cache folder."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(commit)


def test_a_hub_synthesizer_pushed_again_is_built_anew_not_served_from_the_cache(hub, tmp_path):
    from hf_ipt.builder import AugmentedBuilder

    news(hub)
    first = hub.put(SYNTH, {"config.json": "{}"}, repo_type="model")

    def key(**config) -> str:
        return AugmentedBuilder(corpus=REPO, synthesizer=SYNTH, cache_dir=str(tmp_path), **config).config_id

    before = key()
    assert key() == before  # nothing moved: the same cache
    hub.put(SYNTH, {"config.json": '{"retrained": true}'}, repo_type="model")
    assert key() != before  # the model the backends would load now is another one
    assert key(revision=first) == key(revision=first) != key()
    requests = len(hub.requests)
    key(revision=first)
    assert not [p for _, p in hub.requests[requests:] if "/api/models/" in p]  # a sha is key enough


def test_a_hub_synthesizer_is_keyed_offline_by_the_commit_the_local_cache_holds(hub, caplog, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from hf_ipt.augment import synthesizer_commit

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # read when called, as the model loads do
    commit = "a" * 40
    assert synthesizer_commit(SYNTH, None) is None  # not on the Hub, not cached: the model load names it
    cached_snapshot(tmp_path, SYNTH, commit)
    hub.fail_next("info", 500)
    with caplog.at_level("WARNING", logger="hf_ipt.augment"):
        assert synthesizer_commit(SYNTH, None) == commit  # the Hub failed: what the load falls back to
    assert "could not look up the commit of synthesizer 'org/synth'" in caplog.text
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    requests = len(hub.requests)
    assert synthesizer_commit(SYNTH, None) == commit and len(hub.requests) == requests  # offline: no request
    assert synthesizer_commit(SYNTH, "v2") is None  # a ref the cache does not hold
    assert synthesizer_commit("./no/such/model", None) is None


def test_a_job_on_a_hub_synthesizer_keeps_the_commit_it_started_with(hub, tmp_path, tiny_synthesizer_dir, caplog):
    """A synthesizer trained again and pushed while a job runs: the job goes on with the model it
    started with (every rank loads the commit job.json pins), never mixing outputs of two models."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.filters import FilterConfig
    from hf_ipt.jobs import JobConfig, prepare_pinned, run_job

    from .test_builder import write_jsonl

    first = hub.put(SYNTH, {f.name: f.read_bytes() for f in tiny_synthesizer_dir.iterdir() if f.is_file()},
                    repo_type="model")
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=2)
    synthesis = SynthesisConfig(synthesizer=SYNTH, backend="transformers", max_new_tokens=40)
    assert run_job(job, synthesis, FilterConfig(), rank=0, world_size=2, progress=False) is None  # unit 0 done
    spec_path = tmp_path / "o" / "job.json"
    spec = json.loads(spec_path.read_text())
    assert spec["synthesis"]["synthesizer_commit"] == first

    # a job started by an older hf_ipt (no commit pinned) resumes as it ran, not refused as another job
    older = json.loads(spec_path.read_text())
    del older["synthesis"]["synthesizer_commit"]
    spec_path.write_text(json.dumps(older))
    assert "synthesizer_commit" not in prepare_pinned(job, synthesis, FilterConfig())[1]["synthesis"]
    spec_path.write_text(json.dumps(spec))

    hub.put(SYNTH, {"model.safetensors": b"not the model it started with"}, repo_type="model")
    with caplog.at_level("WARNING", logger="hf_ipt.jobs"):
        manifest = run_job(job, synthesis, FilterConfig(), rank=1, world_size=2, progress=False)
    assert f"it goes on with commit {first}" in caplog.text
    assert manifest["settings"]["synthesis"]["revision"] == first and manifest["pairs"]["kept"] > 0
    assert json.loads(spec_path.read_text()) == spec  # the pin stays


# ---------------------------------------------------------------------------- offline, from the Hugging Face cache


@pytest.fixture
def downloaded(hub, tmp_path, monkeypatch) -> str:
    """`news` downloaded as `hf download org/news --repo-type dataset` does, then the Hub taken away
    (offline mode); its commit."""
    from huggingface_hub import constants, snapshot_download

    commit = news(hub)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read when called
    snapshot_download(REPO, repo_type="dataset")
    hub.put(REPO, {"data/train-00002-of-00002.jsonl": jsonl([doc(50)])})  # a later commit, never downloaded
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    return commit


def test_a_downloaded_hub_corpus_is_read_offline_from_the_cache(downloaded, hub, tmp_path, capsys):
    from hf_ipt.cli import HubUnreachableError
    from hf_ipt.corpus import open_file, pin_hub_dataset

    files = CorpusConfig(corpus=REPO).files()
    assert files == [hf_url(downloaded, path) for path in TRAIN]  # as online: a job's units, a cache key
    docs = [d for shard in make_shards(files, 3) for d in iter_shard(shard)]
    assert {d.id: d.text for d in docs} == EXPECTED  # read from the cache
    assert CorpusConfig(corpus=REPO, corpus_split="test").files() == [hf_url(downloaded, "data/test-00000-of-00001.jsonl")]
    assert CorpusConfig(corpus=f"hf://datasets/{REPO}/data/train-*.jsonl").files() == files
    assert CorpusConfig(corpus=f"hf://datasets/{REPO}@{downloaded}/data").files()[1:] == files  # test, train...
    assert pin_hub_dataset(REPO) == f"{REPO}@{downloaded}"
    with pytest.raises(HubUnreachableError, match=rf"'hf://datasets/org/news@{'e' * 40}/{TRAIN[0]}' is read from the "
                       rf"Hub, which cannot be reached \(offline mode.*`hf download org/news --repo-type dataset "
                       rf"--revision {'e' * 40}`"):
        open_file(hf_url("e" * 40, TRAIN[0]))  # a job's unit of a commit the cache does not hold

    rows = list(load_augmented(REPO, streaming=True, split="train", synthesizer="rules", output="pairs"))
    assert {r["id"]: r["context"] for r in rows} == EXPECTED
    # built (not streamed): `datasets`' download asked the Hub to resolve the cached commit's URLs
    built = load_augmented(REPO, split="train", synthesizer="rules", output="pairs", cache_dir=str(tmp_path / "built"))
    assert {r["id"]: r["context"] for r in built} == EXPECTED
    out = tmp_path / "o"
    assert synthesize_main(["--corpus", REPO, "--output_dir", str(out), "--num_shards", "2", "--output", "pairs"]) == 0
    assert {r["id"]: r["context"] for r in output_rows(out)} == EXPECTED
    assert hub.requests == []  # offline: nothing asked of the Hub


def test_with_hf_datasets_offline_alone_the_files_are_read_from_the_cache_too(downloaded, hub, monkeypatch):
    """`HF_DATASETS_OFFLINE=1` lists a Hub corpus in the cache (`datasets` cannot stream from the Hub then);
    its files were read from the Hub all the same (retried for minutes offline, downloaded online)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    files = CorpusConfig(corpus=REPO).files()
    assert files == [hf_url(downloaded, path) for path in TRAIN]
    assert {d.id: d.text for shard in make_shards(files, 2) for d in iter_shard(shard)} == EXPECTED
    assert hub.requests == []
    # a file the cache lacks is read from the Hub, which `datasets` alone offline still reaches (as before)
    from hf_ipt.corpus import cached_url_file

    assert cached_url_file(hf_url("e" * 40, TRAIN[0])) == hf_url("e" * 40, TRAIN[0])


def test_offline_a_revision_the_cache_lacks_or_a_partial_download_is_an_error(downloaded, tmp_path):
    from hf_ipt.cli import HubUnreachableError

    with pytest.raises(HubUnreachableError, match=r"`corpus` 'org/news' is read from the Hub, which cannot be "
                       r"reached \(offline mode.*`hf download org/news --repo-type dataset`, into the Hugging Face "
                       r"cache, which is read offline"):
        CorpusConfig(corpus=REPO, corpus_revision="v2").files()
    (tmp_path / "hub" / "datasets--org--news" / "snapshots" / downloaded / TRAIN[1]).unlink()  # a download cut short
    with pytest.raises(UsageError, match=r"`corpus` 'org/news': the Hugging Face cache holds part of the dataset "
                       r"only \(The cached snapshot .* is incomplete: 1 file\(s\) are missing \(data/train-00001-of-00002.jsonl\)\): "
                       r"download the rest where the Hub is reachable \(`hf download org/news --repo-type dataset`\)"):
        CorpusConfig(corpus=REPO).files()


def test_a_recipe_streams_a_downloaded_hub_dataset_offline_pinned_to_the_cached_commit(downloaded, hub, monkeypatch):
    """Offline, a Hub dataset source is read from the Hugging Face cache; one the cache lacks stops the
    recipe before its model loads (it was left alone, and failed once the stream started)."""
    from types import SimpleNamespace

    from huggingface_hub import constants

    from hf_ipt.cli import HubUnreachableError
    from hf_ipt.training.checks import pin_hub_sources
    from hf_ipt.training.data import load_rows

    config = SimpleNamespace(domain_dataset=REPO)
    assert pin_hub_sources(config) == {"domain_dataset": f"{REPO}@{downloaded}"}  # what online pinning records
    rows = list(load_rows(f"{REPO}@{downloaded}"))
    assert sorted(r["text"] for r in rows) == sorted(EXPECTED.values())
    assert [r["text"] for r in load_rows(REPO, split="test")] == [doc(99)]
    with pytest.raises(HubUnreachableError, match=r"`--general_dataset` 'org/not-downloaded' is read from the Hub, "
                       r"which cannot be reached \(offline mode.*`hf download org/not-downloaded --repo-type dataset`"):
        pin_hub_sources(SimpleNamespace(domain_dataset=REPO, general_dataset="org/not-downloaded"))
    # `datasets` alone offline (HF_DATASETS_OFFLINE=1): it cannot stream from the Hub, so the cache is read too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    assert pin_hub_sources(config) == {"domain_dataset": f"{REPO}@{downloaded}"}
    assert sorted(r["text"] for r in load_rows(REPO)) == sorted(EXPECTED.values())
    assert hub.requests == []


def test_a_job_started_online_resumes_offline_from_the_cache_as_the_same_job(hub, tmp_path, monkeypatch):
    """A job's units name hf:// files at a commit whether listed online or in the cache: a job started
    where the Hub is reachable resumes on offline nodes (and back), not refused as another job."""
    from huggingface_hub import constants, snapshot_download

    first = news(hub)
    job = JobConfig(corpus=REPO, output_dir=str(tmp_path / "o"), num_shards=3)
    synthesis = SynthesisConfig(output="pairs")
    assert run_job(job, synthesis, NO_FILTERS, rank=0, world_size=3, progress=False) is None  # unit 0 only
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot_download(REPO, repo_type="dataset")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    manifest = run_job(job, synthesis, NO_FILTERS, progress=False)
    assert {r["id"]: r["context"] for r in output_rows(tmp_path / "o")} == EXPECTED
    assert manifest["docs"]["read"] == 6 and hub.requests == []
    spec = json.loads((tmp_path / "o" / "job.json").read_text())
    assert sorted({f for u in spec["units"] for f in u["files"]}) == [hf_url(first, path) for path in TRAIN]
