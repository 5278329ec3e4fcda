"""C = E[k k^T]: the uncentred second moment of a layer's down-projection inputs over a text corpus.

MEMIT's ``rome/layer_stats.py`` collects it over Wikipedia and caches it on disk; it dominates MEMIT's
run time, so here too it is computed once and cached under ``repro.assets.cache_dir()``, one file per
layer, keyed by the model's sha256, the layer, the token count and the dtype. The corpus is WikiText-2
train (``repro.assets.wikitext2()``): its first ``n_tokens`` tokens, in rows of ``seq_len``. Every
layer missing from the cache comes from one pass that runs the blocks only up to the highest of them.
"""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load, save
from tqdm.auto import tqdm

from repro import hooks
from repro.assets import cache_dir, wikitext2
from repro.files import write_atomic
from repro.gradsim.scoring import prompt_ids

SEQ_LEN = 128  # tokens per row (BOS included where the tokenizer adds one)
BATCH_ROWS = 8


def model_fingerprint(lm) -> str:
    """The weights file's sha256 where there is one; else a sha256 of the parameters themselves."""
    if lm.sha256:
        return lm.sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(lm.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(fingerprint: str, layer: int, n_tokens: int, dtype: str):
    return cache_dir() / "gradsim-mom2" / f"{fingerprint[:16]}-layer{layer}-{n_tokens}tok-{dtype}.safetensors"


def corpus_rows(tokenizer, n_tokens: int, seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """([rows, seq_len] token ids, [rows] real lengths) covering the first ``n_tokens`` tokens (counting BOS) of WikiText-2 train."""
    bos = prompt_ids(tokenizer, "")  # [] or [BOS]
    body = seq_len - len(bos)
    stream: list[int] = []
    for line in wikitext2()["train"]:
        if line.strip():
            stream += tokenizer(line, add_special_tokens=False)["input_ids"]
            if len(stream) >= n_tokens:
                break
    n_rows = -(-n_tokens // seq_len)
    rows = [bos + stream[r * body : (r + 1) * body] for r in range(n_rows)]
    rows[-1] = rows[-1][: len(rows[-1]) - (n_rows * seq_len - n_tokens)]  # exactly n_tokens in all
    width = max(map(len, rows))
    return torch.tensor([r + r[-1:] * (width - len(r)) for r in rows]), torch.tensor([len(r) for r in rows])


@torch.no_grad()
def second_moments(lm, layers: list[int], n_tokens: int, dtype: str = "float32", progress: bool = True
                   ) -> dict[int, torch.Tensor]:
    """{layer: C [d_in, d_in] float64}: from the cache, computing (and caching) the missing layers."""
    fingerprint = model_fingerprint(lm)
    moments, missing = {}, []
    for layer in layers:
        path = cache_path(fingerprint, layer, n_tokens, dtype)
        if path.is_file():
            moments[layer] = load(path.read_bytes())["mom2"]
        else:
            missing.append(layer)
    if not missing:
        return moments
    computed = accumulate_moments(lm, missing, n_tokens, dtype, progress)
    for layer in missing:
        moments[layer] = computed[layer]
        buffer = save({"mom2": moments[layer].contiguous()}, metadata={"tokens": str(n_tokens), "layer": str(layer)})
        write_atomic(cache_path(fingerprint, layer, n_tokens, dtype), buffer)
    return {layer: moments[layer] for layer in layers}


@torch.no_grad()
def accumulate_moments(lm, layers: list[int], n_tokens: int, dtype: str = "float32", progress: bool = True
                       ) -> dict[int, torch.Tensor]:
    """{layer: sum_t k_t k_t^T / (tokens counted)} over the corpus, computed now (no cache)."""
    adapter, precision = lm.adapter, getattr(torch, dtype)
    ids, lengths = corpus_rows(lm.tokenizer, n_tokens)
    d_in = {layer: adapter.down_proj_weight(layer).shape[1] for layer in layers}
    sums = {layer: torch.zeros(d_in[layer], d_in[layer], dtype=torch.float64) for layer in layers}
    counted = 0
    bar = tqdm(total=n_tokens, desc="MEMIT covariance (WikiText-2 tokens)", unit="tok", disable=not progress)
    with hooks.caching(adapter, [hooks.mlp_post(layer) for layer in layers]) as cache:
        for lo in range(0, len(ids), BATCH_ROWS):
            rows, n = ids[lo : lo + BATCH_ROWS], lengths[lo : lo + BATCH_ROWS]
            adapter.run_blocks(adapter.embed(rows), 0, max(layers) + 1)  # later blocks are not needed
            real = torch.arange(rows.shape[1])[None] < n[:, None]  # [rows, pos]: drop the padding
            for layer in layers:
                keys = cache[hooks.mlp_post(layer)][real].to(precision)  # [tokens, d_in]
                sums[layer] += (keys.T @ keys).double()
            counted += int(real.sum())
            bar.update(int(real.sum()))
    bar.close()
    return {layer: sums[layer] / counted for layer in layers}
