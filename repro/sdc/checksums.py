"""Checksums every clean attention computation carries (algorithm-based fault tolerance, as ATTNChecker does),
and their float tolerances: a fault in a product shows up as a mismatch between the product's row sums and
the same sums computed from its operands, at the cost of a few vector operations instead of a re-read of
every element against a bound.

Notation as in ``repro.sdc.bounds`` (J_i the visible keys of query i, n_i = |J_i|, scale c, u the model
dtype's unit roundoff, u_a the accumulation's, gamma_n in u_a; rows without visible keys are exempt).
M_i = sum_{j in J_i} sum_r |q_ir| |k_jr| = |q_i| . (sum_{j in J_i} |k_j|) is the magnitude every rounding error
of row i's scores is relative to.

1. Scores: sum_{j in J_i} s_ij = c q_i . (sum_{j in J_i} k_j) (the mask adds 0 on visible entries). The key
   sums are running sums over positions for causal attention (one cumsum of K, padded keys zeroed) and one
   sum for bidirectional attention; any other mask costs a matmul of the mask with K. Each stored score is
   within 2u |s_ij| + gamma_d c M_ij of the exact one (the dot product, the scale and the rounding to the
   model's dtype); the checker's two sides add gamma_{n+d+2} c M_i each. Tolerance
   1.01 (2u + 3 gamma_{n+d+2}) c M_i.
2. Weights: sum_j p_ij = 1 over all keys and over the visible keys alone (masked weights are exactly 0, so
   a weight that leaks onto a masked key shows in one of the two). Tolerance as bounds' derivation 3:
   u + 3 (n_i + 2) u_a.
3. Output: z_i . 1 = sum_j p_ij (v_j . 1). The right side is the extra column the attention's own matmul
   computes when the values carry their row sums (``repro.attention``, slot ``z_checksum``), so a fault
   after that matmul breaks the equality. Each side's rounding is within (u + gamma_{n+d}) sum_j p_ij |v_j|.1
   and the weights sum to 1 within check 2's tolerance, so the tolerance is
   1.01 (3u + 4 gamma_{n+d+2}) max_{j} |v_j|.1 (the largest L1 norm of a value row the query could mix).
4. The q, k, v envelopes of ``repro.sdc.bounds`` (derivation 1) are kept: a fault in an operand is
   consistent with every product made from it, so no checksum of those products can see it.

NaN or Inf anywhere in a checked product makes its checksum NaN or Inf, which fails the comparison, so no
separate finiteness pass is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.sdc.bounds import Precision


@dataclass(frozen=True)
class MaskFacts:
    """What the checksums need from one mask, derived once per mask tensor (every layer of a forward pass
    sees the same one, ``repro.attention``)."""

    weights: torch.Tensor  # [b | 1, q, k] float32: 1 where visible
    keys_seen: torch.Tensor  # [b | 1, k] bool: the keys the last query sees (every unpadded key)
    padded: bool  # some key is hidden from every query
    structured: bool  # the mask is causal (or bidirectional) AND'ed with the padding: running sums apply
    live: torch.Tensor | None  # [b | 1, 1, q] rows with a visible key; None when all have one

    @classmethod
    def of(cls, visible: torch.Tensor, *, causal: bool) -> MaskFacts:
        n_q, n_k = visible.shape[-2:]
        keys_seen = visible[:, 0, -1, :]
        padded = not bool(keys_seen.all())
        structure = keys_seen[:, None, None, :].expand_as(visible)
        if causal:
            structure = structure & torch.ones(n_q, n_k, dtype=torch.bool, device=visible.device).tril(n_k - n_q)
        n = visible.sum(dim=-1)
        live = None if bool((n > 0).all()) else n > 0
        return cls(visible[:, 0].to(torch.float32), keys_seen, padded, torch.equal(visible, structure), live)


def visible_key_sums(k: torch.Tensor, visible: torch.Tensor, facts: MaskFacts, *, causal: bool) -> torch.Tensor:
    """sum_{j in J_i} k_j for every query: k [b, kv_h, k, d] (or [b, kv_h, k] norms), visible
    [b | 1, 1, q, k] -> [b, kv_h, q, ...]. Causal and bidirectional masks with padded keys take a running or a
    plain sum over positions; any other mask a matmul with the mask."""
    n_q, n_k = visible.shape[-2:]
    vectors = k.dim() == 4
    if not facts.structured:  # another mask: sum the visible keys of each row directly
        dense = visible.to(k.dtype)  # [b | 1, 1, q, k]
        return torch.matmul(dense, k) if vectors else torch.matmul(dense, k.unsqueeze(-1)).squeeze(-1)
    if facts.padded:  # padded keys zeroed
        k = k * (facts.keys_seen[:, None, :, None] if vectors else facts.keys_seen[:, None, :]).to(k.dtype)
    if causal:  # query i sees keys 0 .. i + (n_k - n_q)
        return k.cumsum(dim=2)[:, :, n_k - n_q:]
    total = k.sum(dim=2, keepdim=True)
    return total.expand(-1, -1, n_q, -1) if vectors else total.expand(-1, -1, n_q)


def row_sums(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum over the visible keys of each row: x [b, h, q, k], weights [b | 1, q, k] (the mask as 0/1) ->
    [b, h, q], as a batched matmul (one pass over x). Masked entries must be finite (0 x -inf is NaN): weights
    are 0 there and float32 scores hold the mask value; half-precision scores, which may overflow to -inf
    there, take a select instead (slower, and never timed)."""
    if weights.shape[0] == 1:
        return torch.einsum("bhqk,qk->bhq", x, weights[0])
    return torch.einsum("bhqk,bqk->bhq", x, weights)


def checksum_uses(q, k, v, scores, pattern, z, z_checksum, visible, scale: float, precision: Precision, *,
                  causal: bool, half_masked: bool = False, facts: MaskFacts | None = None) -> dict[str, torch.Tensor]:
    """The three checksums of one call -> {check: [b]} (use > 1 or NaN: violated). q [b, h, q, d];
    k, v [b, kv_h, k, d] (not repeated: grouped queries are folded onto their kv head); scores, pattern
    [b, h, q, k]; z [b, h, q, d]; z_checksum [b, h, q]. ``half_masked``: masked scores may be -inf.

    Cheap by design (the point of a checksum): a handful of vector operations and one pass over the scores
    and two over the weights. Tolerances take n_i at its largest, the number of keys (sound, and only
    looser for the first rows). ``facts``: ``MaskFacts.of(visible)`` when the caller keeps it."""
    b, h, n_q, d = q.shape
    kv_h, n_k = k.shape[1], k.shape[2]
    g = h // kv_h
    facts = facts or MaskFacts.of(visible, causal=causal)
    weights = facts.weights
    gamma = precision.gamma(n_k + d + 2)

    qg = q.view(b, kv_h, g, n_q, d)  # the heads that share a kv head
    expected = (qg * visible_key_sums(k, visible, facts, causal=causal).unsqueeze(2)).sum(-1).view(b, h, n_q)
    # M_i <= ||q_i|| sum_j ||k_j|| (Cauchy-Schwarz per term): two norms instead of |q| and |K| in full.
    magnitude = (q.norm(dim=-1).view(b, kv_h, g, n_q)
                 * visible_key_sums(k.norm(dim=-1), visible, facts, causal=causal).unsqueeze(2)).view(b, h, n_q)
    actual = torch.where(visible, scores, 0.0).sum(-1) if half_masked else row_sums(scores, weights)
    score = torch.sub(actual, expected, alpha=scale).abs_() / magnitude.mul(
        1.01 * (2 * precision.u + 3 * gamma) * scale).clamp_min_(precision.tiny)

    sums = torch.stack([pattern.sum(-1), row_sums(pattern, weights)])  # [2, b, h, q]: all keys, visible keys
    weight = sums.sub_(1).abs_().amax(0) / (precision.u + 3 * (n_k + 2) * precision.u_a)

    value_l1 = v.abs().sum(-1).amax(dim=-1)  # [b, kv_h]: the largest |v_j|.1 (all keys: a superset)
    output_tol = value_l1.mul(1.01 * (3 * precision.u + 4 * gamma)).clamp_min_(precision.tiny)
    output = (z.sum(-1) - z_checksum).abs_().view(b, kv_h, g, n_q) / output_tol[:, :, None, None]

    ratios = torch.stack([score, weight, output.view(b, h, n_q)])  # [3, b, h, q]
    if facts.live is not None:  # rows without visible keys are padding: exempt
        ratios = torch.where(facts.live, ratios, 0.0)
    ratios = ratios.flatten(2).amax(dim=2)  # [3, b]; NaN propagates through amax
    return dict(zip(("score_checksum", "weight_sum", "output_checksum"), ratios))
