"""C = E[k k^T]: the uncentred second moment of a layer's down-projection inputs over a text corpus.

MEMIT's ``rome/layer_stats.py`` collects it over Wikipedia *articles* (100,000 samples of up to 1,024
tokens) and caches it on disk. Here the corpus is WikiText-2 train (``repro.assets.wikitext2()``), split
into its 600-odd articles (top-level " = Title = " headings), of which a seeded sample is taken: one
window of ``seq_len`` tokens at a seeded offset in each of ``n_tokens / seq_len`` different articles, so
the keys come from many topics rather than from one contiguous article. Every layer missing from the cache comes
from one pass that runs the blocks only up to the highest of them.

The cache (``repro.assets.cache_dir()/gradsim-mom2``) holds one safetensors file per layer whose name and
metadata carry its provenance: the model's sha256, the layer, the token and article counts, the window
length, the sampling seed, the corpus file's sha256, the dtype and ``SAMPLING_VERSION``; a file made
another way is never reused for these settings.
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm

from repro import hooks
from repro.assets import cache_dir, data_sha256s, wikitext2
from repro.files import write_atomic
from repro.gradsim.scoring import prompt_ids

SEQ_LEN = 128  # tokens per window by default (BOS included where the tokenizer adds one)
BATCH_TOKENS = 2048  # tokens per forward pass
SAMPLING_VERSION = "articles-v2"  # how windows are drawn; part of every cache key
CORPUS = "wikitext-2/wiki.train.tokens"
_ARTICLE_HEADING = re.compile(r"^ = [^=].* = $")


def model_fingerprint(lm) -> str:
    """The weights file's sha256 where there is one; else a sha256 of the parameters themselves."""
    if lm.sha256:
        return lm.sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(lm.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def provenance(lm, layer: int, n_tokens: int, dtype: str, seed: int, seq_len: int = SEQ_LEN) -> dict[str, str]:
    """What made a covariance file: everything that changes its content."""
    return {
        "model_sha256": model_fingerprint(lm), "layer": str(layer), "tokens": str(n_tokens),
        "articles": str(-(-n_tokens // seq_len)), "seq_len": str(seq_len), "seed": str(seed), "dtype": dtype,
        "corpus": CORPUS, "corpus_sha256": data_sha256s(CORPUS).get(CORPUS, "unknown"), "sampling": SAMPLING_VERSION,
    }


def cache_path(meta: dict[str, str]):
    key = hashlib.sha256("|".join(f"{k}={v}" for k, v in sorted(meta.items())).encode()).hexdigest()[:12]
    return cache_dir() / "gradsim-mom2" / (
        f"{meta['model_sha256'][:16]}-layer{meta['layer']}-{meta['tokens']}tok-{meta['dtype']}-{key}.safetensors")


def articles(lines: list[str]) -> list[list[str]]:
    """WikiText-2 lines grouped by article (a top-level heading starts one); blank lines dropped."""
    out: list[list[str]] = []
    for line in lines:
        if _ARTICLE_HEADING.match(line.rstrip("\n")):
            out.append([])
        if line.strip() and out:
            out[-1].append(line.strip())
    return [a for a in out if a]


def corpus_rows(tokenizer, n_tokens: int, seed: int, seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor, int]:
    """([rows, seq_len] token ids, [rows] real lengths, articles used): one window at a seeded offset in each
    of ceil(n_tokens / seq_len) WikiText-2 train articles taken in a seeded order (articles shorter than a
    window are passed over), exactly ``n_tokens`` tokens in all (the last window is cut to fit)."""
    docs = articles(wikitext2()["train"])
    n_rows = -(-n_tokens // seq_len)
    rng = np.random.default_rng(seed)
    bos = prompt_ids(tokenizer, "")  # [] or [BOS]
    body = seq_len - len(bos)
    rows = []
    for a in rng.permutation(len(docs)).tolist():
        if len(rows) == n_rows:
            break
        ids = tokenizer(" ".join(docs[a]), add_special_tokens=False)["input_ids"]
        if len(ids) >= body:
            start = int(rng.integers(0, len(ids) - body + 1))
            rows.append(bos + ids[start : start + body])
    if len(rows) < n_rows:
        raise ValueError(f"{n_tokens} covariance tokens need {n_rows} WikiText-2 train articles of at least "
                         f"{seq_len} tokens; there are {len(rows)}. Use fewer tokens or longer windows.")
    rows[-1] = rows[-1][: n_tokens - seq_len * (n_rows - 1)]
    width = max(map(len, rows))
    ids = torch.tensor([r + r[-1:] * (width - len(r)) for r in rows])
    return ids, torch.tensor([len(r) for r in rows]), n_rows


@torch.no_grad()
def second_moments(lm, layers: list[int], n_tokens: int, dtype: str = "float32", seed: int = 0,
                   seq_len: int = SEQ_LEN, progress: bool = True) -> tuple[dict[int, torch.Tensor], dict]:
    """({layer: C [d_in, d_in] float64}, provenance): from the cache, computing (and caching) the missing
    layers. The provenance says where each came from and how long the missing ones took to build."""
    metas = {layer: provenance(lm, layer, n_tokens, dtype, seed, seq_len) for layer in layers}
    moments, missing = {}, []
    for layer in layers:
        path = cache_path(metas[layer])
        if path.is_file():
            with safe_open(path, "pt") as f:
                if f.metadata() == metas[layer]:
                    moments[layer] = f.get_tensor("mom2")
                    continue
        missing.append(layer)
    seconds = 0.0
    if missing:
        start = time.perf_counter()
        computed = accumulate_moments(lm, missing, n_tokens, dtype, seed, seq_len, progress)
        seconds = time.perf_counter() - start
        for layer in missing:
            moments[layer] = computed[layer]
            write_atomic(cache_path(metas[layer]), save({"mom2": moments[layer].contiguous()}, metadata=metas[layer]))
    info = {**{k: v for k, v in metas[layers[0]].items() if k != "layer"}, "layers": list(layers),
            "cached_layers": [la for la in layers if la not in missing], "built_layers": missing,
            "build_seconds": round(seconds, 1), "files": [cache_path(metas[la]).name for la in layers]}
    return {layer: moments[layer] for layer in layers}, info


@torch.no_grad()
def accumulate_moments(lm, layers: list[int], n_tokens: int, dtype: str = "float32", seed: int = 0,
                       seq_len: int = SEQ_LEN, progress: bool = True) -> dict[int, torch.Tensor]:
    """{layer: sum_t k_t k_t^T / (tokens counted)} over the sampled windows, computed now (no cache)."""
    adapter, precision = lm.adapter, getattr(torch, dtype)
    ids, lengths, _ = corpus_rows(lm.tokenizer, n_tokens, seed, seq_len)
    d_in = {layer: adapter.down_proj_weight(layer).shape[1] for layer in layers}
    sums = {layer: torch.zeros(d_in[layer], d_in[layer], dtype=torch.float64) for layer in layers}
    counted = 0
    bar = tqdm(total=n_tokens, desc="MEMIT covariance (WikiText-2 tokens)", unit="tok", disable=not progress)
    with hooks.caching(adapter, [hooks.mlp_post(layer) for layer in layers]) as cache:
        step = max(1, BATCH_TOKENS // ids.shape[1])
        for lo in range(0, len(ids), step):
            rows, n = ids[lo : lo + step], lengths[lo : lo + step]
            rows = rows[:, : int(n.max())].to(adapter.device)
            adapter.run_blocks(adapter.embed(rows), 0, max(layers) + 1)  # later blocks are not needed
            real = torch.arange(int(n.max()))[None] < n[:, None]  # [rows, pos]: drop the padding
            for layer in layers:
                keys = cache[hooks.mlp_post(layer)][real.to(adapter.device)].to(precision)  # [tokens, d_in]
                sums[layer] += (keys.T @ keys).double().cpu()
            counted += int(real.sum())
            bar.update(int(real.sum()))
    bar.close()
    return {layer: sums[layer] / counted for layer in layers}
