"""A roofline for the LM head: is it bound by memory bandwidth or by arithmetic at a given sequence length?

Roofline model (Williams, Waterman & Patterson, "Roofline", CACM 2009): a kernel takes at least
max(bytes moved / memory bandwidth, FLOPs / peak FLOP/s). For the unembedding [s, d] x [d, V] the
weight (d * V elements, 50257 * 768 * 4 B = 154 MB for GPT-2 in float32) is read once per call whatever
s is, while FLOPs grow as 2 * s * d * V; arithmetic intensity = FLOPs / bytes rises with s, so short
sequences are memory-bound and long ones compute-bound. Both ceilings are measured on this machine.
"""

from __future__ import annotations

import torch

from repro.timing import synchronizer, time_calls

BANDWIDTH_BYTES = 256 * 2**20  # far above any CPU's last-level cache, so the reads come from DRAM
PEAK_MATMUL_N = 2048  # big enough for BLAS to reach its plateau, small enough to take ~0.1 s on 2 cores
REPEATS = 7


def _median_seconds(fn, device: torch.device, repeats: int = REPEATS) -> float:
    # One warm-up call: page faults on fresh memory, thread-pool start.
    return time_calls(fn, repeats, warmup=1, sync=synchronizer(device)).median


def memory_bandwidth(device: torch.device | str = "cpu", n_bytes: int = BANDWIDTH_BYTES) -> dict[str, float]:
    """Measured DRAM bandwidth in bytes/s: ``read`` (a sum over ``n_bytes``, reads only, like streaming a weight)
    and ``copy`` (read + write of ``n_bytes``, counted as 2 * n_bytes moved)."""
    device = torch.device(device)
    src = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    with torch.inference_mode():
        read_s = _median_seconds(lambda: src.sum(), device)
        copy_s = _median_seconds(lambda: dst.copy_(src), device)
    return {
        "bytes": n_bytes,
        "read_s": read_s,
        "read": n_bytes / read_s,
        "copy_s": copy_s,
        "copy": 2 * n_bytes / copy_s,
    }


def peak_matmul_flops(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int = PEAK_MATMUL_N
) -> float:
    """Attained FLOP/s of a large square matmul (2 n^3 FLOPs): the practical compute ceiling."""
    device = torch.device(device)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    with torch.inference_mode():
        seconds = _median_seconds(lambda: a @ b, device, repeats=max(3, REPEATS // 2))
    return 2 * n**3 / seconds


def lm_head_roofline(
    seq_len: int,
    d_model: int,
    d_vocab: int,
    element_bytes: int,
    bandwidth: float,
    peak_flops: float,
    batch: int = 1,
) -> dict[str, float | str]:
    """Roofline prediction for one LM-head call on [batch, seq_len, d_model] (times in ms).

    Bytes: the weight once plus the activations in and out (the logits, batch * s * V, matter at long s).
    """
    flops = 2 * batch * seq_len * d_model * d_vocab
    n_bytes = element_bytes * (d_model * d_vocab + batch * seq_len * d_model + batch * seq_len * d_vocab)
    memory_ms = 1e3 * n_bytes / bandwidth
    compute_ms = 1e3 * flops / peak_flops
    return {
        "seq_len": seq_len,
        "flops": flops,
        "bytes": n_bytes,
        "intensity": flops / n_bytes,  # FLOP per byte
        "ridge": peak_flops / bandwidth,  # the intensity where the two ceilings meet
        "memory_ms": memory_ms,
        "compute_ms": compute_ms,
        "predicted_ms": max(memory_ms, compute_ms),
        "bound": "memory" if memory_ms >= compute_ms else "compute",
    }
