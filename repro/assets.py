"""Offline-first datasets: one loader per dataset, each file verified by a pinned sha256.

The data directory (``$REPRO_DATA_DIR``) is laid out like the project's ``../shared/data``. When it is
absent and the hub is allowed (``HF_HUB_OFFLINE`` unset), datasets come from the Hugging Face hub via the
optional ``datasets`` package and are normalised to the same in-memory form.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

DATA_ENV = "REPRO_DATA_DIR"
CACHE_ENV = "REPRO_CACHE_DIR"

# sha256 of every file the suite reads (identical to the data folder's SHA256SUMS).
DATA_FILES: dict[str, str] = {
    "gpt2-tokenizer/merges.txt": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "gpt2-tokenizer/vocab.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "hotpotqa/hotpot_dev_distractor_v1_first103.json": "f764184c713165e24c511fa067f76217d2eb9ad5c87223f268a6feedf45e812b",
    "ptb/ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb/ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb/ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "pubmedqa/ori_pqal.json": "8b3276be8942ebbd77f3ddcda12c1749bf0e490045a736fd8438ee40cf37a41d",
    "pubmedqa/test_ground_truth.json": "939fe566f09017d13b1ca64d2ddfee0bc2374b366048152997669cccedc44d51",
    "wikitext-2/wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    "wikitext-2/wiki.train.tokens": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "wikitext-2/wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
}

SPLITS = ("train", "valid", "test")


class AssetError(RuntimeError):
    """A model or data file is missing, corrupt or unusable; the message says how to fix it."""


class ModelUnavailable(AssetError):
    """The weights of a registered model cannot be found here (or are not what the key promises)."""


def data_dir() -> Path | None:
    """The local data directory, or None when ``$REPRO_DATA_DIR`` is unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where derived artefacts (e.g. de-quantised weights) are cached."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/repro")).expanduser()


def hub_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in {"1", "true", "yes", "on"}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, how_to_fix: str) -> None:
    """Raise AssetError unless ``path`` hashes to ``expected`` (memoised per size and mtime)."""
    stat = path.stat()
    _check(path.resolve(), stat.st_size, stat.st_mtime_ns, expected, how_to_fix)


@cache
def _check(path: Path, size: int, mtime_ns: int, expected: str, how_to_fix: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(f"{path} is corrupt: sha256 {actual} but expected {expected}. {how_to_fix}")


def data_file(relpath: str) -> Path:
    """A verified data file from the data directory; a clear error if it is absent or corrupt."""
    expected = DATA_FILES[relpath]
    root = data_dir()
    if root is None:
        raise AssetError(
            f"Data file {relpath!r} needed but ${DATA_ENV} is not set. Point it at a folder laid out like "
            f"the project's ../shared/data (for example `export {DATA_ENV}=../shared/data`)."
        )
    path = root / relpath
    if not path.is_file():
        raise AssetError(
            f"Data file not found: looked for {path} (from ${DATA_ENV}={root}). Expected {relpath} "
            f"with sha256 {expected}; copy it there or fix ${DATA_ENV}."
        )
    verify_sha256(
        path, expected, "Replace it with the original file (see the data README; `sha256sum -c SHA256SUMS` checks it)."
    )
    return path


def data_sha256s(prefix: str) -> dict[str, str]:
    """The pinned sha256 of every data file under ``prefix`` (for provenance)."""
    return {k: v for k, v in DATA_FILES.items() if k.startswith(prefix)}


def _use_local(prefix: str) -> bool:
    """Local files when a data directory is configured; else the hub, if allowed."""
    if data_dir() is not None:
        return True
    if hub_allowed():
        return False
    raise AssetError(
        f"Dataset {prefix!r} is unavailable: ${DATA_ENV} is not set and HF_HUB_OFFLINE forbids the hub. "
        f"Set {DATA_ENV} to a folder laid out like ../shared/data, or unset HF_HUB_OFFLINE to download it."
    )


def _hub_dataset(*args: str):
    try:
        import datasets
    except ImportError as err:
        raise AssetError(
            f"Downloading {args[0]!r} needs the `datasets` package (pip install 'repro[hub]'), "
            f"or set ${DATA_ENV} to a local copy laid out like ../shared/data."
        ) from err
    try:
        return datasets.load_dataset(*args)
    except Exception as err:  # network, auth or schema errors all mean the same to the user
        raise AssetError(
            f"Could not download {args} from the Hugging Face hub ({err}). Set ${DATA_ENV} to a local copy."
        ) from err


# ---- loaders: each returns the same in-memory form whatever the source ----


def _read_lines(relpath: str) -> list[str]:
    return data_file(relpath).read_text(encoding="utf-8").splitlines()


@cache
def ptb() -> dict[str, list[str]]:
    """Penn Treebank (Mikolov): split -> sentences, one per line, ``<eos>`` implied at each line end."""
    if _use_local("ptb"):
        return {s: _read_lines(f"ptb/ptb.{s}.txt") for s in SPLITS}
    ds = _hub_dataset("ptb_text_only")
    return {s: [f" {r['sentence']} " for r in ds[h]] for s, h in zip(SPLITS, ("train", "validation", "test"))}


@cache
def wikitext2() -> dict[str, list[str]]:
    """WikiText-2 v1 (tokenised): split -> lines as in ``wiki.*.tokens``."""
    if _use_local("wikitext-2"):
        return {s: _read_lines(f"wikitext-2/wiki.{s}.tokens") for s in SPLITS}
    ds = _hub_dataset("wikitext", "wikitext-2-v1")
    return {s: [r["text"].rstrip("\n") for r in ds[h]] for s, h in zip(SPLITS, ("train", "validation", "test"))}


@cache
def hotpotqa() -> list[dict]:
    """HotpotQA dev distractor examples in the original JSON format (first 103 locally)."""
    if _use_local("hotpotqa"):
        return json.loads(data_file("hotpotqa/hotpot_dev_distractor_v1_first103.json").read_text("utf-8"))
    ds = _hub_dataset("hotpot_qa", "distractor")["validation"]
    return [
        {
            "_id": r["id"],
            "question": r["question"],
            "answer": r["answer"],
            "type": r["type"],
            "level": r["level"],
            "supporting_facts": [list(x) for x in zip(r["supporting_facts"]["title"], r["supporting_facts"]["sent_id"])],
            "context": [list(x) for x in zip(r["context"]["title"], r["context"]["sentences"])],
        }
        for r in ds
    ]


@cache
def pubmedqa() -> tuple[dict[str, dict], frozenset[str] | None]:
    """PubMedQA PQA-L: (pubid -> record in ``ori_pqal.json`` form, official test ids or None from the hub)."""
    if _use_local("pubmedqa"):
        records = json.loads(data_file("pubmedqa/ori_pqal.json").read_text("utf-8"))
        test_ids = json.loads(data_file("pubmedqa/test_ground_truth.json").read_text("utf-8"))
        return records, frozenset(test_ids)
    ds = _hub_dataset("pubmed_qa", "pqa_labeled")["train"]
    records = {
        str(r["pubid"]): {
            "QUESTION": r["question"],
            "CONTEXTS": r["context"]["contexts"],
            "LABELS": r["context"]["labels"],
            "MESHES": r["context"]["meshes"],
            "LONG_ANSWER": r["long_answer"],
            "final_decision": r["final_decision"],
        }
        for r in ds
    }
    return records, None


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """(vocab.json, merges.txt) of the original GPT-2 BPE, verified."""
    return data_file("gpt2-tokenizer/vocab.json"), data_file("gpt2-tokenizer/merges.txt")
