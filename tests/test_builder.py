"""The `hf_ipt/augmented` builder: the exact user call, streaming and not, sharding, bad docs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hf_ipt  # noqa: F401  (registers hf_ipt/augmented)
from hf_ipt.augment import Augmenter, SynthesisConfig, features
from hf_ipt.builder import AugmentedBuilder, load_augmented
from hf_ipt.chaining import MARKERS_ONLY

from .conftest import SYNTH_PAIRS

SENTENCES = [
    "The company reported a profit of $1.13bn in the third quarter, up from last year's figure.",
    "However, sales in the U.S. fell by 3.5% because demand from retailers weakened sharply.",
    "Therefore, the shares of the firm dropped sharply in early trading on Wall Street today.",
    "Analysts said the outlook is about energy prices and interest rates rather than demand.",
]


def doc(i: int) -> str:
    return f"Market report {i}\n" + " ".join(SENTENCES[(i + k) % 4] for k in range(4))


def write_jsonl(path: Path, n: int, start: int = 0) -> Path:
    path.write_text("".join(json.dumps({"text": doc(i), "n": i}) + "\n" for i in range(start, start + n)))
    return path


def ids_of(rows) -> list[str]:
    return [r["id"] for r in rows]


def test_rows_are_keyed_by_shard_as_datasets_5_records_them(tmp_path, monkeypatch):
    """Rows were keyed by their string id: datasets took every row for shard 0, so the split's original shard
    lengths (the Hub viewer's map from shards to rows, when datasets records them) were wrong."""
    monkeypatch.setattr(datasets.config, "SAVE_ORIGINAL_SHARD_LENGTHS", True)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 12)
    ds = load_augmented(str(corpus), num_shards=3, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 12 and ds.info.splits["train"].original_shard_lengths == [4, 4, 4]


@pytest.mark.parametrize("streaming", [True, False])
def test_exact_user_call_rules(tmp_path, streaming, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty working dir must not matter (no data-file scan)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 12)
    ds = datasets.load_dataset(
        "hf_ipt/augmented", corpus=str(corpus), synthesizer="rules", streaming=streaming, split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    rows = list(ds)
    assert sorted(r["doc_ids"][0] for r in rows) == sorted(f"corpus.jsonl:{i}" for i in range(12))
    assert all(r["corpus"] == "corpus.jsonl" for r in rows)
    assert sum(r["num_pairs"] for r in rows) > 0
    for r in rows:  # every raw text is inside its training text
        assert doc(int(r["id"].split(":")[1])) in r["text"]


def test_exact_user_call_transformers_pairs_mode(tmp_path, tiny_synthesizer_dir):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 6)
    ds = datasets.load_dataset(
        "hf_ipt/augmented", corpus=str(corpus), synthesizer=str(tiny_synthesizer_dir), backend="transformers",
        rounds=2, max_new_tokens=40, output="pairs", streaming=True, split="train", window_size=6, num_shards=1,
    )
    rows = list(ds)
    assert ids_of(rows) == [f"corpus.jsonl:{i}" for i in range(6)]
    for r in rows:
        assert [(p["question"], p["answer"]) for p in r["pairs"]] == SYNTH_PAIRS
    # round 1 texts (3..5) were prompted with their round-0 partner as a shot
    assert [r["round"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert rows[3]["shots"] == ["corpus.jsonl:0"] and rows[0]["shots"] == []


def test_templified_transformers_non_streaming_chains(tmp_path, tiny_synthesizer_dir):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 4)
    ds = load_augmented(str(corpus), synthesizer=str(tiny_synthesizer_dir), backend="transformers",
                        max_new_tokens=40, window_size=4, num_shards=1, cache_dir=str(tmp_path / "c"))
    assert len(ds) == 2  # two chains of two texts
    for row in ds:
        assert len(row["doc_ids"]) == 2 and row["num_pairs"] == 4
        for d in row["doc_ids"]:
            assert doc(int(d.split(":")[1])) in row["text"]
        assert "What is reported?" in row["text"] and "Sales fell." in row["text"]


def test_a_corpus_of_one_text_per_file_is_still_chained(tmp_path, tiny_synthesizer_dir):
    """16 .txt files, default shards: windows never span shards, and a shard per file used to
    synthesize every text alone (no M-shot chain, batches of one prompt)."""
    for i in range(16):
        (tmp_path / f"{i:02d}.txt").write_text(doc(i))
    ds = load_augmented(str(tmp_path / "*.txt"), synthesizer=str(tiny_synthesizer_dir), backend="transformers",
                        max_new_tokens=40, streaming=True, output="pairs")
    assert ds.num_shards == 4  # 16 small files: 4 shards of 4 (TEXT_FILES_PER_SHARD)
    rows = list(ds)
    assert len(rows) == 16 and sum(bool(r["shots"]) for r in rows) == 8  # each shard's second round has a shot


def test_txt_and_parquet_and_glob(tmp_path):
    (tmp_path / "a.txt").write_text(doc(1))
    (tmp_path / "b.txt").write_text(doc(2))
    pq.write_table(pa.table({"body": [doc(3), doc(4)]}), tmp_path / "c.parquet")
    txt = load_augmented(str(tmp_path / "*.txt"), streaming=True)
    assert sorted(r["id"] for r in txt) == ["a.txt", "b.txt"]
    par = load_augmented(str(tmp_path / "c.parquet"), text_column="body", streaming=True, output="pairs")
    assert [r["context"] for r in par] == [doc(3), doc(4)]


def test_hub_style_dataset_repo_offline(tmp_path):
    repo = tmp_path / "org_news"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.table({"content": [doc(i) for i in range(5)]}), repo / "data" / "train-00000.parquet")
    pq.write_table(pa.table({"content": [doc(9)]}), repo / "data" / "test-00000.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: business\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
        "  - split: test\n    path: data/test-*.parquet\n---\n# news\n"
    )
    ds = datasets.load_dataset("hf_ipt/augmented", corpus=str(repo), corpus_config="business", corpus_split="test",
                               text_column="content", streaming=True, split="train", output="pairs")
    assert [r["context"] for r in ds] == [doc(9)]
    with pytest.raises(ValueError, match="corpus_split"):
        list(load_augmented(str(repo), corpus_config="business", corpus_split="validation", text_column="content",
                            streaming=True))


def test_num_workers_and_ranks_cover_each_text_once(tmp_path):
    import torch.utils.data

    write_jsonl(tmp_path / "one.jsonl", 20)
    write_jsonl(tmp_path / "two.jsonl", 13, start=20)
    ds = datasets.load_dataset("hf_ipt/augmented", corpus=str(tmp_path / "*.jsonl"), streaming=True, split="train",
                               output="pairs")
    assert ds.num_shards == 8
    loader = torch.utils.data.DataLoader(ds, num_workers=2, batch_size=None)
    seen = [r["id"] for r in loader]
    expected = sorted([f"one.jsonl:{i}" for i in range(20)] + [f"two.jsonl:{i}" for i in range(13)])
    assert sorted(seen) == expected
    from datasets.distributed import split_dataset_by_node

    ranks = [[r["id"] for r in split_dataset_by_node(ds, rank=k, world_size=2)] for k in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == expected


def test_bad_documents_are_counted_never_fatal(tmp_path, caplog, tiny_synthesizer_dir):
    lines = [json.dumps({"text": doc(0)}), json.dumps({"text": ""}), json.dumps({"text": "bin\x00ary"}),
             "{not json", json.dumps({"other": 1}), json.dumps({"text": "word " * 3000})]
    (tmp_path / "bad.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe broken utf8\n")
    with caplog.at_level("WARNING", logger="hf_ipt"):
        rows = list(load_augmented(str(tmp_path / "bad.jsonl"), synthesizer=str(tiny_synthesizer_dir),
                                   backend="transformers", max_model_len=256, max_new_tokens=40, rounds=1,
                                   output="pairs", streaming=True, num_shards=1))
    assert ids_of(rows) == ["bad.jsonl:0", "bad.jsonl:5"]
    assert rows[1]["truncated"] and rows[1]["context"] == "word " * 3000  # kept whole, prompt cut
    # cut to fit with room for the answer: synthesized, not refused by the engine
    assert rows[1]["error"] == "" and [(p["question"], p["answer"]) for p in rows[1]["pairs"]] == SYNTH_PAIRS
    assert "skipped 5 documents" in caplog.text and "1 texts truncated" in caplog.text
    for reason in ("empty", "binary", "invalid json", "no string in column", "not utf-8"):
        assert reason in caplog.text


def test_the_skipped_documents_warning_names_every_file_of_its_shard(tmp_path, caplog):
    """One shard of three files (as `hf-ipt augment` reads a corpus): a reject in the last file was
    reported under the first file's name alone."""
    write_jsonl(tmp_path / "a.jsonl", 2)
    write_jsonl(tmp_path / "b.jsonl", 2, start=2)
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with caplog.at_level("WARNING", logger="hf_ipt"):
        rows = list(load_augmented(str(tmp_path / "*.jsonl"), output="pairs", streaming=True, num_shards=1))
    assert len(rows) == 4
    (warning,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert all(str(tmp_path / name) in warning for name in ("a.jsonl", "b.jsonl", "c.jsonl")), warning
    assert "skipped 1 documents {'empty': 1}" in warning


def test_a_corpus_that_gives_no_rows_loads_empty_as_it_streams(tmp_path, caplog):
    """Not datasets' 'Instruction "train" corresponds to no data!' from a non-streaming load,
    the first time or from the cache."""
    (tmp_path / "blank.txt").write_text("  \n")  # rejected as empty
    (tmp_path / "none.jsonl").write_text("")
    for corpus in ("blank.txt", "none.jsonl"):
        streamed = list(load_augmented(str(tmp_path / corpus), streaming=True))
        for _ in range(2):  # built, then from the cache
            with caplog.at_level("WARNING", logger="hf_ipt"):
                ds = datasets.load_dataset("hf_ipt/augmented", corpus=str(tmp_path / corpus), split="train",
                                           cache_dir=str(tmp_path / "cache"))
            assert streamed == list(ds) == [] and ds.features == features("templified") and ds.split == "train"
            assert f"corpus {str(tmp_path / corpus)!r} gave no rows" in caplog.text
            caplog.clear()


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="`corpus` is required"):
        datasets.load_dataset("hf_ipt/augmented", streaming=True)
    with pytest.raises(ValueError, match="`rounds` must be >= 1"):
        load_augmented(str(write_jsonl(tmp_path / "x.jsonl", 1)), rounds=0, streaming=True)
    with pytest.raises(ValueError, match="corpus="):
        datasets.load_dataset("hf_ipt/augmented", data_files="x.jsonl")
    with pytest.raises(FileNotFoundError, match="matched no file"):
        list(load_augmented(str(tmp_path / "missing*.jsonl"), streaming=True))


def test_cache_key_covers_settings(tmp_path):
    corpus = str(write_jsonl(tmp_path / "x.jsonl", 2))
    ids = {AugmentedBuilder(corpus=corpus, **kw).config_id for kw in
           ({}, {"seed": 1}, {"synthesizer": "m", "rounds": 3}, {"output": "pairs"},
            {"synthesizer": "m", "backend": "transformers"})}
    assert len(ids) == 5
    before = AugmentedBuilder(corpus=corpus).config_id
    write_jsonl(tmp_path / "x.jsonl", 3)  # same path, new content
    assert AugmentedBuilder(corpus=corpus).config_id != before
    # the same file staged again (`cp -p`, `rsync -a` to node-local scratch: a new inode and ctime) reuses the cache
    path = tmp_path / "x.jsonl"
    before, stat, content = AugmentedBuilder(corpus=corpus).config_id, path.stat(), path.read_bytes()
    time.sleep(0.01)
    path.unlink()
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert AugmentedBuilder(corpus=corpus).config_id == before


def test_a_local_synthesizer_trained_again_in_place_is_built_anew_not_served_from_the_cache(tmp_path):
    corpus = str(write_jsonl(tmp_path / "x.jsonl", 2))
    model = tmp_path / "synth"
    (model / "checkpoint-1").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights, first training")

    def key() -> str:  # no model loads to make the key
        return AugmentedBuilder(corpus=corpus, synthesizer=str(model), backend="transformers").config_id

    before = key()
    assert key() == before  # an unchanged model reuses the cache
    (model / "checkpoint-1" / "optimizer.pt").write_bytes(b"state")  # not what the model loads
    assert key() == before
    (model / "model.safetensors").write_bytes(b"weights, second training")
    assert key() != before


def test_a_setting_given_at_its_default_reuses_the_cache_of_the_call_without_it(tmp_path):
    corpus = str(write_jsonl(tmp_path / "x.jsonl", 2))
    typed_out = ({}, {"synthesizer": "rules"}, {"output": "templified", "text_column": "text", "corpus_name": None},
                 {"num_keywords": AugmentedBuilder(corpus=corpus).config.num_keywords})
    assert len({AugmentedBuilder(corpus=corpus, **kw).config_id for kw in typed_out}) == 1
    assert AugmentedBuilder(corpus=corpus, output="pairs").config_id != AugmentedBuilder(corpus=corpus).config_id


def test_an_edited_keyword_file_is_built_anew_not_served_from_the_cache(tmp_path):
    """The cache key (and `Dataset.map`'s fingerprint of the map function) holds the keywords of a
    `domain_keywords` file, not only its path: an edited file gives another build."""
    from datasets.fingerprint import Hasher

    corpus, kw, cache = str(write_jsonl(tmp_path / "x.jsonl", 4)), tmp_path / "kw.txt", str(tmp_path / "cache")

    def keyword_tasks() -> int:
        built = load_augmented(corpus, domain_keywords=str(kw), output="pairs", cache_dir=cache)
        return sum(p["task"] == "word2text.keywords" for ps in built["pairs"] for p in ps)

    kw.write_text("bonds\ntariffs\nretailers\n")  # never all three in one sentence: no keyword task
    key, fingerprint = (AugmentedBuilder(corpus=corpus, domain_keywords=str(kw)).config_id,
                        Hasher.hash(Augmenter(SynthesisConfig(domain_keywords=str(kw)))))
    assert keyword_tasks() == 0
    kw.write_text("\ufeffbonds \n\ntariffs\nretailers\n")  # the same keywords, spelled otherwise: the same key
    assert AugmentedBuilder(corpus=corpus, domain_keywords=str(kw)).config_id == key
    kw.write_text("sales\ndemand\nretailers\n")  # one sentence has all three
    assert AugmentedBuilder(corpus=corpus, domain_keywords=str(kw)).config_id != key
    assert Hasher.hash(Augmenter(SynthesisConfig(domain_keywords=str(kw)))) != fingerprint
    assert keyword_tasks() > 0  # built with the edited file, not the first build from the cache


def test_map_function_on_a_dataset():
    ds = datasets.Dataset.from_dict({"text": [doc(i) for i in range(5)], "id": [f"d{i}" for i in range(5)]})
    out = ds.map(Augmenter(SynthesisConfig(output="pairs")), batched=True, batch_size=3, remove_columns=["text", "id"])
    assert out["id"] == [f"d{i}" for i in range(5)] and sum(len(p) for p in out["pairs"]) > 0
    it = datasets.IterableDataset.from_generator(lambda: ({"text": doc(i)} for i in range(4)))
    rows = list(it.map(Augmenter(), batched=True, batch_size=2, remove_columns=["text"]))
    assert len(rows) == 4 and all(r["text"] for r in rows)
    # without batched=True each character of a text was a document, and the map returned one row of lists
    with pytest.raises(TypeError, match=r"map it with `Dataset.map\(augmenter, batched=True, ...\)`"):
        ds.map(Augmenter(SynthesisConfig(output="pairs")))


def test_a_misspelled_setting_names_the_closest(tmp_path):
    """`load_dataset("hf_ipt/augmented", rouds=3)` was a bare TypeError of the config's __init__; the CLI and
    the YAML configs name the setting meant."""
    corpus = str(write_jsonl(tmp_path / "c.jsonl", 2))
    for load in (lambda **kw: datasets.load_dataset("hf_ipt/augmented", corpus=corpus, streaming=True, split="train",
                                                    **kw),
                 lambda **kw: load_augmented(corpus, streaming=True, **kw)):
        with pytest.raises(ValueError, match=r"unknown setting 'rouds' \(did you mean rounds\?\); unknown setting "
                                             r"'xyz' \(hf_ipt/augmented's settings: AugmentedConfig"):
            load(rouds=3, xyz=1)
    assert len(list(load_augmented(corpus, streaming=True, num_shards=2))) == 2  # known ones still pass


def test_a_window_smaller_than_the_rounds_is_refused():
    """Each window is cut into `rounds` slices: window_size=1, rounds=2 synthesized every text in one round."""
    with pytest.raises(ValueError, match=r"`window_size` \(1\) must be >= `rounds` \(2\)"):
        SynthesisConfig(synthesizer="org/synthesizer", window_size=1, rounds=2)
    SynthesisConfig(synthesizer="org/synthesizer", window_size=2, rounds=2)
    SynthesisConfig(window_size=1)  # the rule miner chains nothing


def test_map_function_skips_the_texts_the_builder_rejects(tiny_tokenizer):
    """A null row (Parquet), an empty or a whitespace-only text reaches no engine and gets no pairs:
    a pairs row that says why, or no templified row at all."""
    from hf_ipt.backends.base import Generation

    contexts = []

    class Engine:  # stands for a model: records each prompt's text
        tokenizer = tiny_tokenizer

        def generate(self, prompts):
            contexts.extend(tiny_tokenizer.decode(p).rsplit("<CON>", 1)[-1] for p in prompts)
            return [Generation("<QUE> What is reported? <ANS> A profit. </END>", len(p)) for p in prompts]

    # f: markers alone, blank once they are: no prompt, and no pre-training row of `<s> </s>`
    batch = {"text": [doc(0), None, "", " \n\t ", doc(1), "<s> </s>"], "id": ["a", "b", "c", "d", "e", "f"]}
    for output in ("pairs", "templified"):
        fn = Augmenter(SynthesisConfig(synthesizer="org/m", backend="transformers", rounds=1, output=output))
        fn._engine = Engine()
        contexts.clear()
        out = fn(batch)
        assert len(contexts) == 2 and all("Market report" in c for c in contexts), output
        if output == "pairs":  # one row per text, in input order
            assert out["id"] == ["a", "b", "c", "d", "e", "f"] and [len(p) for p in out["pairs"]] == [1, 0, 0, 0, 1, 0]
            assert out["error"] == ["", "no string in column 'text'", "empty", "empty", "", MARKERS_ONLY]
            assert out["context"][:3] == [doc(0), "", ""]
        else:
            assert out["doc_ids"] == [["a"], ["e"]] and out["num_pairs"] == [1, 1]
    # the rule miner too, as a map function over a dataset with null rows and no id column
    ds = datasets.Dataset.from_dict({"text": [doc(0), None, "   ", doc(1)]})
    rows = ds.map(Augmenter(SynthesisConfig(output="pairs")), batched=True, with_indices=True, remove_columns=["text"])
    assert rows["id"] == ["0", "1", "2", "3"] and rows["error"] == ["", "no string in column 'text'", "empty", ""]
    assert [bool(p) for p in rows["pairs"]] == [True, False, False, True]
    texts = ds.map(Augmenter(), batched=True, remove_columns=["text"])
    assert sorted(d for r in texts["doc_ids"] for d in r) == sorted(datasets.Dataset.from_dict(
        {"text": [doc(0), doc(1)]}).map(Augmenter(), batched=True, remove_columns=["text"])["id"])
    assert Augmenter()({"text": [None, ""]}) == {name: [] for name in ("id", "corpus", "text", "doc_ids", "num_pairs")}
    # markers alone with the rule miner too: no pre-training row of `<s> </s>` (BOS/EOS ids once tokenized)
    batch = {"text": [doc(0), "<s> </s>", f"<s>{doc(1)}</s>"], "id": ["a", "f", "g"]}
    pairs = Augmenter(SynthesisConfig(output="pairs"))(batch)
    assert pairs["error"] == ["", MARKERS_ONLY, ""] and [bool(p) for p in pairs["pairs"]] == [True, False, True]
    fn = Augmenter()
    assert fn(batch)["doc_ids"] == [["a"], ["g"]] and fn.stats.markers_only == 1
    assert [fn.gives_row(t) for t in batch["text"]] == [True, False, True]


def test_rules_domain_keywords_from_file_and_window(tmp_path):
    texts = [doc(i) for i in range(12)]
    kw = tmp_path / "kw.txt"
    kw.write_text("profit\nquarter\ndemand\nretailers\nsales\nshares\n")

    def keyword_tasks(setting: str) -> int:
        out = Augmenter(SynthesisConfig(output="pairs", domain_keywords=setting))({"text": texts})
        return sum(p["task"] == "word2text.keywords" for ps in out["pairs"] for p in ps)

    assert keyword_tasks(str(kw)) > 0 and keyword_tasks("none") == 0
    with pytest.raises(ValueError, match="domain_keywords"):
        SynthesisConfig(domain_keywords="missing-file.txt")
    bom = tmp_path / "bom.txt"  # as Windows editors save it: the first keyword must not become "\ufeffsales"
    bom.write_bytes(b"\xef\xbb\xbfsales\ndemand\nretailers\n")  # a task needs all three (one sentence has them)
    assert keyword_tasks(str(bom)) > 0


def test_task_types_pick_the_miners_tasks_and_key_the_cache(tmp_path):
    """`task_types` (the miner's task types, e.g. all but the kinds of one's held-out tasks) reach the miner,
    are spelled one way whatever the input (cache key, job pins), and are refused when wrong or with a model."""
    texts = [doc(i) for i in range(12)]

    def mined(**kw) -> set[str]:
        out = Augmenter(SynthesisConfig(output="pairs", **kw))({"text": texts})
        return {p["task"].split(".")[0] for ps in out["pairs"] for p in ps}

    everything = mined()
    assert {"summarize", "completion", "nli"} <= everything
    assert mined(task_types="nli,completion") == {"nli", "completion"}
    assert mined(task_types=["paraphrase", "nli", "commonsense", "word2text"]) == everything - {"summarize", "completion"}
    assert SynthesisConfig(task_types=" completion, nli ").task_types == "nli,completion"  # the miner's order
    assert SynthesisConfig(task_types=["nli", "nli"]).task_types == "nli"
    assert SynthesisConfig(task_types="nli,commonsense,paraphrase,word2text,summarize,completion").task_types is None
    corpus = str(write_jsonl(tmp_path / "x.jsonl", 2))
    key = AugmentedBuilder(corpus=corpus).config_id
    assert AugmentedBuilder(corpus=corpus, task_types=["completion", "summarize", "word2text", "paraphrase",
                                                       "commonsense", "nli"]).config_id == key  # all six: the default
    assert AugmentedBuilder(corpus=corpus, task_types="nli").config_id != key
    assert AugmentedBuilder(corpus=corpus, task_types="nli , completion").config_id == \
        AugmentedBuilder(corpus=corpus, task_types=["completion", "nli"]).config_id
    with pytest.raises(ValueError, match=r"unknown task type 'sumarize' \(did you mean summarize\?\); give a "
                                         r"comma-separated list among nli, commonsense, .*, or leave it out"):
        SynthesisConfig(task_types="nli,sumarize")
    for empty in ("", " , ", []):
        with pytest.raises(ValueError, match="`task_types`: no task type in"):
            SynthesisConfig(task_types=empty)
    with pytest.raises(ValueError, match="`task_types` must be task type names, got"):
        SynthesisConfig(task_types=["nli", 3])
    with pytest.raises(ValueError, match=r"task_types.*rule miner"):
        SynthesisConfig(synthesizer="org/synth", task_types="nli")


def test_keyword_settings_that_cannot_work_are_refused_before_any_text(tmp_path):
    """A keyword file that cannot be read fails when the settings are made, not halfway through a
    run; `num_keywords` below 1 (which sliced keywords off the end) and `num_keywords` with keywords
    that are not ranked per window (a file, 'none') are refused, not ignored."""
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match=r"`domain_keywords` file .*latin.txt' is not UTF-8"):
        SynthesisConfig(domain_keywords=str(latin))
    with pytest.raises(ValueError, match=r"`domain_keywords` file .*empty.txt' holds no keyword"):
        SynthesisConfig(domain_keywords=str(tmp_path / "empty.txt"))
    (tmp_path / "phrases.txt").write_text("dividend\ninterest rate\n")  # the miner matches single words
    with pytest.raises(ValueError, match=r"`domain_keywords` file .*phrases.txt': .*\['interest rate'\]"):
        SynthesisConfig(domain_keywords=str(tmp_path / "phrases.txt"))
    for n in (0, -3):
        with pytest.raises(ValueError, match=f"`num_keywords` must be >= 1, got {n}; to turn keyword tasks off"):
            SynthesisConfig(num_keywords=n)
    for name, value in (("window_size", "8"), ("rounds", 2.0), ("num_keywords", True),  # failed deep in the builder
                        ("seed", "1"), ("seed", 1.5), ("seed", None)):  # the miner's first window, mid-stream
        with pytest.raises(TypeError, match=rf"^`{name}` must be an integer, got {value!r} \(SynthesisConfig\.{name}\)"):
            SynthesisConfig(**{name: value})
    from hf_ipt.builder import AugmentedConfig

    for value in ("", "  "):  # accepted: the output's `corpus` column was empty
        with pytest.raises(ValueError, match=rf"^`corpus_name` must be a name .*got {value!r}"):
            AugmentedConfig(corpus="data.jsonl", corpus_name=value)
    for value in ("4", 2.5, True):  # a bare TypeError in the sharding ('<' of str and int), or True taken as 1
        with pytest.raises(TypeError, match=rf"^`num_shards` must be an integer, got {value!r} \(AugmentedConfig"):
            AugmentedConfig(corpus="data.jsonl", num_shards=value)
    for name, value in (("max_batch_tokens", "8"), ("gpu_memory_utilization", "0.9")):  # a bare '<' TypeError
        with pytest.raises(ValueError, match=rf"^`{name}` must be an? (integer >= 1 or unset|number in \(0, 1\]), "
                                             rf"got {value!r} \(SynthesisConfig\.{name}\)"):
            SynthesisConfig(synthesizer="org/synthesizer", backend="transformers" if name == "max_batch_tokens"
                            else "vllm", **{name: value})
    (tmp_path / "kw.txt").write_text("profit\nquarter\n")
    for setting in ("none", str(tmp_path / "kw.txt")):
        with pytest.raises(ValueError, match=r"`num_keywords` \(5\) would be ignored"):
            SynthesisConfig(domain_keywords=setting, num_keywords=5)
    SynthesisConfig(domain_keywords="window", num_keywords=5)


def _spy_builders(monkeypatch) -> list[AugmentedBuilder]:
    """Record every `AugmentedBuilder` that `load_dataset` streams from."""
    built, original = [], AugmentedBuilder.as_streaming_dataset

    def as_streaming_dataset(self, *args, **kwargs):
        built.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AugmentedBuilder, "as_streaming_dataset", as_streaming_dataset)
    return built


def test_exact_user_call_forwards_the_synthesizer_revision(tmp_path, monkeypatch):
    corpus = str(write_jsonl(tmp_path / "corpus.jsonl", 2))
    built = _spy_builders(monkeypatch)
    for revision in ("abc123", "def456", None):  # streaming: the model is not loaded
        datasets.load_dataset("hf_ipt/augmented", corpus=corpus, synthesizer="org/synthesizer",
                              backend="transformers", revision=revision, streaming=True, split="train")
    assert [b.config.revision for b in built] == ["abc123", "def456", None]
    assert built[0].config.backend_config().revision == "abc123"  # what the engine is loaded with
    assert len({b.config_id for b in built}) == 3
    assert built[2].config_id == AugmentedBuilder(corpus=corpus, synthesizer="org/synthesizer",
                                                  backend="transformers").config_id
    with pytest.raises(ValueError, match="corpus_revision"):  # rules has no model: never silently ignored
        datasets.load_dataset("hf_ipt/augmented", corpus=corpus, synthesizer="rules", revision="v1",
                              streaming=True, split="train")


def test_corpus_revision_reaches_the_corpus_loader(tmp_path, monkeypatch):
    import hf_ipt.corpus as corpus_module

    repo = tmp_path / "org_news"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": [doc(i) for i in range(3)]}), repo / "data" / "train-00000.parquet")
    asked, original = [], corpus_module.repo_files

    def repo_files(corpus, config, split, revision, token=None):
        asked.append(revision)
        return original(corpus, config, split, revision, token)

    monkeypatch.setattr(corpus_module, "repo_files", repo_files)
    ds = datasets.load_dataset("hf_ipt/augmented", corpus=str(repo), corpus_revision="v1.0", output="pairs",
                               streaming=True, split="train")
    assert [r["context"] for r in ds] == [doc(i) for i in range(3)]
    assert asked == ["v1.0"]  # listed once: the data is read from the files the cache key names
    ids = {AugmentedBuilder(corpus=str(repo), **kw).config_id for kw in ({}, {"corpus_revision": "v1.0"},
                                                                         {"corpus_revision": "v2.0"})}
    assert len(ids) == 3
    sha = "0123456789abcdef0123456789abcdef01234567"  # pins a Hub repo, not a local folder's files
    before = AugmentedBuilder(corpus=str(repo), corpus_revision=sha).config_id
    pq.write_table(pa.table({"text": [doc(i) for i in range(4)]}), repo / "data" / "train-00000.parquet")
    assert AugmentedBuilder(corpus=str(repo), corpus_revision=sha).config_id != before
    with pytest.raises(ValueError, match="corpus_revision"):  # local files have no revisions
        load_augmented(str(write_jsonl(tmp_path / "x.jsonl", 1)), corpus_revision="v1.0", streaming=True)
    # nor has a local synthesizer folder: its `revision` was recorded (cache key, summary) and ignored
    from hf_ipt.augment import SynthesisConfig

    (tmp_path / "synth").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):  # the shape of a saved model
        (tmp_path / "synth" / name).write_text("{}")
    with pytest.raises(ValueError, match=r"`revision` 'v1' pins a Hub model, and `synthesizer` '.*synth' is a local "
                                         r"folder, which has no revisions"):
        SynthesisConfig(synthesizer=str(tmp_path / "synth"), backend="transformers", revision="v1")


def test_map_ids_do_not_restart_per_batch(monkeypatch):
    import hf_ipt.templify

    seeds, original = [], hf_ipt.templify.templify_chain

    def templify(*args, seed, **kwargs):
        seeds.append(seed)
        return original(*args, seed=seed, **kwargs)

    monkeypatch.setattr(hf_ipt.templify, "templify_chain", templify)
    ds = datasets.Dataset.from_dict({"text": [doc(i) for i in range(6)]})  # no id column
    fn = Augmenter(SynthesisConfig())
    out = ds.map(fn, batched=True, batch_size=2, remove_columns=["text"])
    assert len(set(out["id"])) == len(out) == 6  # identical ids -> identical templify seeds
    assert len(set(seeds)) == len(seeds) == 6
    indexed = ds.map(fn, batched=True, batch_size=2, with_indices=True, remove_columns=["text"])
    assert indexed["id"] == [str(i) for i in range(6)]
    it = datasets.IterableDataset.from_generator(lambda: ({"text": doc(i)} for i in range(6)))
    streamed = it.map(fn, batched=True, batch_size=2, with_indices=True, remove_columns=["text"])
    assert [r["id"] for r in streamed] == [str(i) for i in range(6)]
    # content ids: stable, whatever the batching
    rebatched = ds.map(fn, batched=True, batch_size=4, remove_columns=["text"], load_from_cache_file=False)
    assert rebatched["id"] == out["id"]
    # An id column of ints comes out as the declared string ids; a null id falls back to the text's.
    numbered = datasets.Dataset.from_dict({"text": [doc(i) for i in range(3)], "id": [7, None, 9]})
    pairs = Augmenter(SynthesisConfig(output="pairs"))
    rows = numbered.map(pairs, batched=True, remove_columns=["text", "id"], features=features("pairs"))
    assert rows["id"][0::2] == ["7", "9"] and rows["id"][1].startswith("sha1-")


def test_engine_kwargs_are_keyed_by_value_not_spelling(tmp_path):
    corpus = str(write_jsonl(tmp_path / "a.jsonl", 2))
    spellings = ('{"enforce_eager": true, "max_num_seqs": 64}', '{"max_num_seqs":64,"enforce_eager":true}',
                 {"max_num_seqs": 64, "enforce_eager": True})
    keys = {AugmentedBuilder(corpus=corpus, synthesizer="org/m", engine_kwargs=e).config_id for e in spellings}
    assert len(keys) == 1
    unset = {AugmentedBuilder(corpus=corpus, synthesizer="org/m", **kw).config_id
             for kw in ({}, {"engine_kwargs": "{}"}, {"engine_kwargs": None})}
    assert len(unset) == 1 and not keys & unset


def test_augmenter_settings_beside_a_config_and_its_fingerprint(caplog, monkeypatch):
    """Settings given beside a config were dropped; a dict for a config was an AttributeError deep inside; the
    counts of batches done entered the pickled state, so the same `Dataset.map` run again missed its cache;
    a batch without the text column was a bare KeyError; streaming indices per worker repeat ids."""
    from datasets.fingerprint import Hasher

    import hf_ipt.augment

    fn = Augmenter(SynthesisConfig(seed=3), output="pairs", corpus_name="news")
    assert (fn.config.output, fn.config.seed, fn.corpus_name) == ("pairs", 3, "news")
    with pytest.raises(TypeError, match=r"Augmenter takes a SynthesisConfig, got dict: pass the settings as keywords"):
        Augmenter({"output": "pairs"})
    fn = Augmenter()
    before = Hasher.hash(fn)
    fn({"text": [doc(0), "<s></s>"]})
    assert fn.stats.markers_only == 1 and Hasher.hash(fn) == before  # the counts are no setting
    with pytest.raises(KeyError, match=r"no column 'text' \(its columns: \['content'\]\): name the column"):
        fn({"content": [doc(0)]})
    monkeypatch.setattr(hf_ipt.augment, "_in_a_loader_worker", lambda: True)
    hf_ipt.augment._warn_worker_indices.cache_clear()
    with caplog.at_level("WARNING", logger="hf_ipt"):
        fn({"text": [doc(0)]}, indices=[0])
        fn({"text": [doc(1)]}, indices=[1])
    assert caplog.text.count("counts its indices per worker") == 1


def test_inputs_of_the_wrong_type_are_named_not_failed_on_deep_inside(tmp_path):
    """A list of files or a Dataset as `corpus` ('list' object has no attribute 'startswith'), one str where a
    list of texts goes (mined per character), a config value as a string (a TypeError mid-mining), text for
    token-id prompts, a `save_to_disk` folder as corpus (taken for text files), a missing synthesizer."""
    from hf_ipt.backends.base import check_prompts
    from hf_ipt.chaining import chain
    from hf_ipt.cli import UsageError
    from hf_ipt.corpus import CorpusConfig
    from hf_ipt.miner import MinerConfig, RuleMiner

    for corpus in (["a.jsonl", "b.jsonl"], datasets.Dataset.from_dict({"text": ["x"]})):
        with pytest.raises(TypeError, match=r"`corpus` must be one path, glob, URL or dataset id, got (list|Dataset): "
                                            r"for several files give a glob"):
            load_augmented(corpus)
    with pytest.raises(TypeError, match="mine_batch takes a list of texts, got one str"):
        RuleMiner().mine_batch(doc(0))
    with pytest.raises(TypeError, match="chain takes a window of texts"):
        chain(doc(0), lambda prompts: [], None)
    for kw in ({"seed": "1"}, {"min_sentence_chars": "50"}, {"max_per_subtype": 2.0}):
        with pytest.raises(TypeError, match=rf"`{next(iter(kw))}` must be an integer, got"):
            MinerConfig(**kw)
    with pytest.raises(TypeError, match="generate takes token-id prompts"):
        check_prompts(["a text"], 100)
    with pytest.raises(ValueError, match="`synthesizer` must be 'rules' or a model id/path, got None"):
        SynthesisConfig(synthesizer=None)
    datasets.Dataset.from_dict({"text": [doc(0)]}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(UsageError, match=r"`corpus` '.*saved' is a dataset written by `save_to_disk` .*"
                                         r"load_from_disk\('.*saved'\)\.to_parquet\('data\.parquet'\)"):
        CorpusConfig(corpus=str(tmp_path / "saved")).files()
    plain = tmp_path / "plain"  # a data file that happens to be named state.json is no save_to_disk folder
    plain.mkdir()
    for name in ("state.json", "country.json"):
        (plain / name).write_text(json.dumps({"text": doc(0)}) + "\n")
    assert len(CorpusConfig(corpus=str(plain)).files()) == 2
    import hf_ipt.evaluation
    import hf_ipt.training

    assert {"Augmenter", "RuleMiner", "load_augmented"} <= set(dir(hf_ipt)) and "EvalCallback" in dir(hf_ipt.evaluation)
    assert "IPTTrainer" in dir(hf_ipt.training)
