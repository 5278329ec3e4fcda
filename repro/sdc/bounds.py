"""Bounds every clean attention computation satisfies, checkable from its own intermediates (no clean
reference run), and the float tolerances that keep clean runs inside them.

Notation: one attention head, query i, keys j in the row's visible set J_i (n_i = |J_i|, read from the
attention's own mask, so padding is honoured), scale c (the module's ``scaling``), scores
s_ij = c q_i.k_j (+ mask), weights p_ij = softmax_j(s_ij), output z_i = sum_j p_ij v_j. A row with no visible
key is padding (its output is never used) and is exempt. Two unit roundoffs (eps / 2): u of the model's
dtype, in which every stored intermediate is rounded, and u_a of the arithmetic that accumulates dot
products, sums and the float32 softmax (u_a = float32's for bfloat16 and float16 models: PyTorch's CPU
kernels and cuBLAS accumulate half-precision products in float32; u_a = u for float32). The checks run in
float32 on the stored tensors (a half-precision value converts exactly). gamma_n = n u_a / (1 - n u_a)
bounds the relative error of an n-term dot product or sum (Higham, Accuracy and Stability of Numerical
Algorithms, Section 3.1). Each check returns a utilisation per batch element: how much of its allowed
interval the worst element uses; <= 1 on every clean run, > 1 or NaN is a violation.

1. Input envelope (q, k, v), from the weights alone. The projections read the output y of a LayerNorm
   (y = g * t + b with t = (x - mean) / sqrt(var + eps), so ||t||_2 <= sqrt(d_model)) or an RMSNorm (y = g * t,
   t = x / sqrt(mean(x^2) + eps), ||t||_2 <= sqrt(d_model)). Channel r of q = W y + b' is then
   |q_r| <= ||W_r * g||_2 sqrt(d_model) + |W_r . b + b'_r| (Cauchy-Schwarz). Rotary embedding rotates the
   channel pairs (r, r + d_head/2), so after it |q_r| <= sqrt(B_r^2 + B_{r+d/2}^2). DistilBERT's attention
   reads the previous block's output LayerNorm (the embeddings' LayerNorm in block 0), the same form.
   Tolerance: the projection's rounding, a factor 1 + 4 gamma_{d_model} + 3 u.
2. Cauchy-Schwarz: |s_ij| <= c ||q_i|| ||k_j|| for j in J_i; masked entries stay at the mask value (below
   half the model dtype's minimum, or -inf where float16 overflowed). Tolerance 1 + 3 u + 3 gamma_{d_head}
   (the dot product, the scale and the stored score's rounding, the checker's two norms).
3. Rows sum to one: |sum_j p_ij - 1| <= u + 3 (n_i + 2) u_a (each exp and division within 1 ulp, an n-term
   sum, the checker's sum, and the cast of the float32 weights to the model's dtype).
4. Softmax interval from the row's score range: p_ij = e^{s_ij} / sum_k e^{s_ik}, and
   n_i e^{min_k s_ik} <= sum_k e^{s_ik} <= n_i e^{max_k s_ik}, so
   e^{s_ij - max s_i} / n_i <= p_ij <= e^{s_ij - min s_i} / n_i,
   which includes 0 <= p_ij <= 1 and, for a row whose scores lie within +-D of each other, the interval
   [e^{-2D}/n, e^{2D}/n]. Checked in log space; tolerance 2 u + 2 (n_i + 3) u_a + 4 u_a max|s_ij| (the
   weight's rounding to the model's dtype, the softmax, the score differences); a weight below the model
   dtype's smallest normal number only has to be >= 0 (underflow). Masked weights are exactly 0.
5. Lambert-W bound on the expected score gap (the step of Kim, Papamakarios and Mnih, ICML 2021, "The
   Lipschitz Constant of Self-Attention", that yields the W_0 term of their Theorem 3.2). With
   g_ij = max_k s_ik - s_ij >= 0 (zero for the arg max),
       G_i = sum_j p_ij g_ij <= W_0((n_i - 1) / e),
   for ANY real scores. Proof: G = sum_j g_j e^{-g_j} / sum_j e^{-g_j}, with one g = 0. At an interior
   stationary point dG/dg_j = e^{-g_j} (1 - g_j + G) / Z = 0, so every other g_j = 1 + G =: g; then
   G = (n-1) g e^{-g} / (1 + (n-1) e^{-g}), i.e. g - 1 = (n-1) e^{-g}, (g-1) e^{g-1} = (n-1)/e and
   G = g - 1 = W_0((n-1)/e). Boundary points (some g_j -> infinity) are the same problem with fewer keys,
   and W_0 increases, so this is the maximum. Kim et al. use it (with g_ij = ||x_i W - x_j W||^2 / sqrt(D/H)
   for L2 attention, tied W^Q = W^K, no mask) to bound L2 multi-head attention's Lipschitz constant by
   terms in 4 phi^{-1}(N-1) + 1 with phi(x) = x e^{x+1}, i.e. phi^{-1}(N-1) = W_0((N-1)/e); GPT-2 and LLaMA
   use dot-product attention, which their Theorem 3.1 shows is not globally Lipschitz, so the theorem
   itself does not apply here and only the lemma is used (``kim_lipschitz_term`` reports the theorem's
   N-dependent factor for comparison). The lemma needs no assumption on how scores arise, so a weight
   moved onto a low-scoring key (a fault in the weights, or a masked key made visible) is caught once the
   row's expected gap exceeds W_0((n-1)/e). Tolerance (u + 2 (n_i + 4) u_a) W + 4 u_a max|s|.
6. Output inside the values' range: z_i is a convex combination of {v_j : j in J_i}, so per channel
   min_j v_jc <= z_ic <= max_j v_jc; the range is taken over a superset of J_i (every key up to i for causal
   attention, every key some query sees otherwise), which keeps it sound under padding. Tolerance
   (2 u + 2 (n_i + 2) u_a + the weights' row-sum tolerance) max_j |v_jc|.
7. Finite: NaN or Inf in q, k, v, a visible score, a weight or an output row that has visible keys is a
   violation (a masked score may be -inf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import lambertw

from repro.adapters import ModelAdapter

HALF = (torch.float16, torch.bfloat16)


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


@dataclass(frozen=True)
class Precision:
    """The floating-point facts a tolerance needs about a model dtype (see the notation above)."""

    dtype: torch.dtype

    @property
    def u(self) -> float:  # stored values
        return unit_roundoff(self.dtype)

    @property
    def u_a(self) -> float:  # accumulation and the float32 softmax
        return unit_roundoff(torch.float32) if self.dtype in HALF else self.u

    @property
    def min(self) -> float:  # the additive mask's value
        return torch.finfo(self.dtype).min

    @property
    def tiny(self) -> float:  # smallest normal number
        return torch.finfo(self.dtype).tiny

    def gamma(self, n):
        """Relative error bound of an n-term sum or dot product (Higham's gamma_n) in the accumulation precision."""
        return n * self.u_a / (1 - n * self.u_a)


def lambert_gap_bound(n) -> np.ndarray:
    """W_0((n - 1) / e): the largest expected score gap a softmax row over n keys can have (derivation 5)."""
    return np.real(lambertw((np.asarray(n, dtype=float) - 1) / math.e, 0))


def kim_lipschitz_term(n) -> np.ndarray:
    """4 W_0((N - 1) / e) + 1, the sequence-length factor of Kim et al.'s Theorem 3.2 (L2 attention)."""
    return 4 * lambert_gap_bound(n) + 1


# ---- derivation 1: envelopes from the weights ----


def envelopes(adapter: ModelAdapter, layer: int) -> dict[str, torch.Tensor]:
    """Per-channel bounds {"q": [heads, d_head], "k": [kv_heads, d_head], "v": [kv_heads, d_head]} on what the
    layer's projections can output for any input to its normalisation (derivation 1)."""
    norm = adapter.attn_norm(layer)
    gain = norm.weight.detach().double()
    shift = getattr(norm, "bias", None)
    shift = torch.zeros_like(gain) if shift is None else shift.detach().double()
    root_d = math.sqrt(adapter.d_model)
    precision = Precision(adapter.model.dtype)
    out = {}
    for name, (weight, bias) in adapter.qkv_weights(layer).items():
        weight = weight.detach().double()  # [out, d_model]
        offset = weight @ shift + (0 if bias is None else bias.detach().double())
        bound = (weight * gain).norm(dim=1) * root_d + offset.abs()  # [out]
        bound = bound.view(-1, adapter.d_head)  # [heads, d_head]
        if adapter.rotary and name in "qk":
            half = adapter.d_head // 2
            pair = torch.cat([bound[:, half:], bound[:, :half]], dim=1)  # channel r's rotation partner
            bound = (bound**2 + pair**2).sqrt()
        out[name] = (bound * (1 + 4 * precision.gamma(adapter.d_model) + 3 * precision.u)).float()
    return out


def envelope_use(x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """max |x| / bound per batch element; x [b, p, h, d] (hook layout), bound [h, d] -> [b]. Computed in
    whichever layout the tensor's memory has (a broadcast over a strided view is several times slower)."""
    if x.is_contiguous():
        return (x.abs() / bound).amax(dim=(1, 2, 3))
    return (x.transpose(1, 2).abs() / bound[:, None, :]).amax(dim=(1, 2, 3))


# ---- derivations 2-7 on one attention call (the model's layout, float32) ----
# visible [b | 1, 1, q, k] (True = the query may see the key); n [b | 1, 1, q] visible keys per row (float);
# live = n > 0 (rows with no visible key are padding and exempt).


def _rowmax(x: torch.Tensor) -> torch.Tensor:  # [b, ...] -> [b]
    return x.flatten(1).amax(dim=1)


def finite_use(q, k, v, scores, pattern, z, visible, live) -> torch.Tensor:
    """0 where every checked element is finite, inf elsewhere -> [b]. Checked: q, k, v, visible scores, and
    the weights and outputs of rows that have visible keys (a masked score may be -inf). The largest |x| of
    each batch element is Inf or NaN exactly when some element is (amax propagates NaN); much faster on CPU
    than an elementwise isfinite."""
    parts = [q, k, v, torch.where(visible, scores, 0.0), torch.where(live.unsqueeze(-1), pattern, 0.0),
             torch.where(live.unsqueeze(-1), z, 0.0)]
    worst = torch.stack([t.abs().flatten(1).amax(dim=1) for t in parts])  # [parts, b]
    return torch.where(torch.isfinite(worst).all(dim=0), 0.0, torch.inf)


def cauchy_schwarz_use(q, k, scores, scale: float, visible, precision: Precision) -> torch.Tensor:
    """q [b, h, q, d], k [b, h, k, d] (kv heads repeated), scores [b, h, q, k] -> [b]."""
    bound = scale * q.norm(dim=-1).unsqueeze(-1) * k.norm(dim=-1).unsqueeze(-2)  # [b, h, q, k]
    bound = bound * (1 + 3 * precision.u + 3 * precision.gamma(q.shape[-1])) + precision.tiny
    use = torch.where(visible, scores.abs() / bound, 0.0)
    # A masked entry must still carry the mask (the model dtype's minimum, plus a score, or -inf).
    unmasked_hidden = (~visible) & ~(scores <= precision.min / 2)
    return torch.where(unmasked_hidden.flatten(1).any(dim=1), torch.inf, _rowmax(use))


def row_sum_use(pattern, n, live, precision: Precision) -> torch.Tensor:
    """pattern [b, h, q, k] -> [b]."""
    tol = precision.u + 3 * (n + 2) * precision.u_a
    return _rowmax(torch.where(live, (pattern.sum(dim=-1) - 1).abs() / tol, 0.0))


def score_range(scores, visible):
    """(row max, row min) over the visible keys: [b, h, q, k] -> [b, h, q, 1] each."""
    lo = torch.where(visible, scores, torch.inf).amin(dim=-1, keepdim=True)
    hi = torch.where(visible, scores, -torch.inf).amax(dim=-1, keepdim=True)
    return hi, lo


def softmax_interval_use(scores, pattern, visible, n, live, precision: Precision) -> torch.Tensor:
    """Derivation 4 in log space; masked weights must be exactly 0. -> [b]."""
    s_max, s_min = score_range(scores, visible)
    n_, u, u_a = n.clamp_min(1).unsqueeze(-1), precision.u, precision.u_a  # [..., q, 1]
    tol = 2 * u + 2 * (n_ + 3) * u_a + 4 * u_a * torch.maximum(s_max.abs(), s_min.abs())
    log_p = pattern.clamp_min(precision.tiny).log()
    hi = scores - s_min - n_.log() + tol
    # Below the model dtype's smallest normal number a weight only has to be >= 0 (underflow).
    lo = (scores - s_max - n_.log() - tol).clamp_min(math.log(precision.tiny) - 1)
    use = torch.where(visible & live.unsqueeze(-1), (log_p - (hi + lo) / 2).abs() / ((hi - lo) / 2), 0.0)
    leaked = ((~visible) & live.unsqueeze(-1) & (pattern != 0)).flatten(1).any(dim=1)
    negative = (pattern < 0).flatten(1).any(dim=1)
    return torch.where(leaked | negative, torch.inf, _rowmax(use))


def lambert_gap_use(scores, pattern, visible, n, live, precision: Precision) -> torch.Tensor:
    """Derivation 5: expected score gap over W_0((n - 1)/e). -> [b]."""
    s_max, s_min = score_range(scores, visible)
    gap = torch.where(visible, pattern * (s_max - scores), 0.0).sum(dim=-1)  # [b, h, q]
    bound = torch.as_tensor(lambert_gap_bound(n.clamp_min(1).cpu().numpy()), dtype=scores.dtype, device=scores.device)
    bound = bound * (1 + precision.u + 2 * (n + 4) * precision.u_a)
    bound = bound + 4 * precision.u_a * torch.maximum(s_max.abs(), s_min.abs()).squeeze(-1)
    return _rowmax(torch.where(live, gap / (bound + precision.tiny), 0.0))


def value_range(v, visible, *, causal: bool):
    """Per-channel (min, max) of the values each query may mix, over a superset of its visible keys:
    v [b, h, k, d] -> [b, h, q, d] each."""
    n_q, n_k = visible.shape[-2:]
    if causal:  # query i sees keys 0 .. i + (n_k - n_q) at most: running extrema
        lo, hi = v.cummin(dim=2).values, v.cummax(dim=2).values
        return lo[:, :, n_k - n_q:], hi[:, :, n_k - n_q:]
    seen = visible.any(dim=-2).unsqueeze(-1)  # [..., k, 1]: any key some query sees
    lo = torch.where(seen, v, torch.inf).amin(dim=2, keepdim=True).expand(-1, -1, n_q, -1)
    hi = torch.where(seen, v, -torch.inf).amax(dim=2, keepdim=True).expand(-1, -1, n_q, -1)
    return lo, hi


def output_range_use(z, v, visible, n, live, precision: Precision, *, causal: bool) -> torch.Tensor:
    """Derivation 6: z [b, h, q, d], v [b, h, k, d] -> [b]."""
    lo, hi = value_range(v, visible, causal=causal)
    n_, u, u_a = n.unsqueeze(-1), precision.u, precision.u_a
    tol = (3 * u + 5 * (n_ + 2) * u_a) * torch.maximum(lo.abs(), hi.abs()) + precision.tiny
    use = (z - (hi + lo) / 2).abs() / ((hi - lo) / 2 + tol)
    return _rowmax(torch.where(live.unsqueeze(-1), use, 0.0))
