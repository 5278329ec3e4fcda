"""Strata: where a fault lands and which bits it flips, chosen to reach the faults that matter, and the cell
every fault falls in, however it was drawn, so that recall can be re-weighted to the uniform mix.

Drawn uniformly (the seed's way), most flips land on mantissa bits or masked entries and do nothing: at 16
tokens nearly half of the score and weight elements are masked. The strata aim at what a checker must see:

- ``uniform``: the anchor, the seed's draw: a location, a bit and an element, each uniform.
- ``exp_up``: an upward exponent flip (an exponent bit that is 0 becomes 1) of the largest |x| of one head's
  vector at one position, in q, k, v or out.
- ``sign_sink``: the sign of the largest-|x| channel of one head's key or value of the first token (the
  attention sink every causal query sees; the escape of the holdout was a sign flip of its value).
- ``sign_argmax``: the sign of a row's largest visible score.
- ``top2``: any bit of one of the two largest visible scores or weights of a row (the sign of the largest
  score excepted: that is ``sign_argmax``).
- ``masked``: any bit of a masked score or weight (their own stratum: harmless unless the flip makes the
  entry visible).

``cell`` assigns every fault to exactly one of these (``other`` for a uniform draw that hits none of the
targeted sets), in the priority order masked, sign_argmax, top2, sign_sink, exp_up, other. Within a cell a
targeted draw is taken to behave like a uniform draw restricted to the cell; the uniform anchor's harmful
faults give each cell's share of the uniform mix (``repro.sdc.result``).

Tensors here are one batch row of a hook site: q, k, v, out [1, pos, head, d_head]; scores and weights
[1, head, query, key] with ``visible`` [1, 1, query, key] (True = the query may see the key).
"""

from __future__ import annotations

import random

import torch

from repro.sdc.injection import LAYOUTS, n_bits

STRATA = ("uniform", "exp_up", "sign_sink", "sign_argmax", "top2", "masked")
CELLS = ("masked", "sign_argmax", "top2", "sign_sink", "exp_up", "other")
VECTOR_SITES = ("q", "k", "v", "out")
ROW_SITES = ("scores", "weights")
LOCATIONS = {
    "uniform": ("q", "k", "v", "scores", "weights", "out"),
    "exp_up": VECTOR_SITES,
    "sign_sink": ("k", "v"),
    "sign_argmax": ("scores",),
    "top2": ROW_SITES,
    "masked": ROW_SITES,
}


class NoTarget(ValueError):
    """The stratum has no element in this tensor (e.g. no masked entry under bidirectional attention)."""


def _bit_pattern(value: float, dtype: torch.dtype) -> int:
    ints = torch.tensor([value], dtype=dtype).view(torch.int32 if dtype == torch.float32 else torch.int16)
    return int(ints[0]) & ((1 << n_bits(dtype)) - 1)


def upward_bits(value: float, dtype: torch.dtype) -> list[int]:
    """The exponent bits that are 0 in ``value``: flipping one multiplies its magnitude by 2^(2^k)."""
    pattern = _bit_pattern(value, dtype)
    return [b for b in LAYOUTS[dtype][1] if not pattern >> b & 1]


def _row_order(x: torch.Tensor, visible: torch.Tensor, head: int, row: int) -> list[int]:
    """Visible keys of one row, largest value first (ties: lower key first)."""
    values = x[0, head, row].float()
    keys = [j for j in range(values.numel()) if bool(visible[0, 0, row, j])]
    return sorted(keys, key=lambda j: (-float(values[j]), j))


def choose(stratum: str, location: str, x: torch.Tensor, visible: torch.Tensor | None, rng: random.Random,
           bits: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(index, bits) of a fault of ``stratum`` at ``location`` of the tensor ``x``; ``bits`` as configured
    (the uniform stratum's), empty when the stratum chooses them."""
    dtype, width = x.dtype, n_bits(x.dtype)
    sign = LAYOUTS[dtype][0]
    if stratum == "uniform":
        return tuple(rng.randrange(n) for n in x.shape), bits
    if stratum == "exp_up":
        pos, head = rng.randrange(x.shape[1]), rng.randrange(x.shape[2])
        channel = int(x[0, pos, head].float().abs().argmax())
        up = upward_bits(float(x[0, pos, head, channel]), dtype)
        if not up:
            raise NoTarget(f"exp_up: the largest |{location}| at position {pos}, head {head} has no 0 exponent bit")
        return (0, pos, head, channel), (rng.choice(up),)
    if stratum == "sign_sink":
        head = rng.randrange(x.shape[2])
        return (0, 0, head, int(x[0, 0, head].float().abs().argmax())), (sign,)
    heads, rows = x.shape[1], x.shape[2]
    if stratum in ("sign_argmax", "top2"):
        wide = [i for i in range(rows) if int(visible[0, 0, i].sum()) >= 2]
        if not wide:
            raise NoTarget(f"{stratum}: no row sees two keys")
        head, row = rng.randrange(heads), rng.choice(wide)
        order = _row_order(x, visible, head, row)
        if stratum == "sign_argmax":
            return (0, head, row, order[0]), (sign,)
        key = rng.choice(order[:2])
        bit = rng.randrange(width)
        while location == "scores" and key == order[0] and bit == sign:  # that fault is sign_argmax's
            bit = rng.randrange(width)
        return (0, head, row, key), (bit,)
    if stratum == "masked":
        hidden = (~visible[0, 0]).nonzero().tolist()
        if not hidden:
            raise NoTarget("masked: no masked entry (bidirectional attention without padding)")
        row, key = rng.choice(hidden)
        return (0, rng.randrange(heads), row, key), (rng.randrange(width),)
    raise ValueError(f"Unknown stratum {stratum!r}; valid strata: {', '.join(STRATA)}.")


def cell(location: str, index: tuple[int, ...], bits: tuple[int, ...], x: torch.Tensor,
         visible: torch.Tensor | None) -> str:
    """The cell of a fault (see the module docstring), from the clean tensor it was injected into."""
    dtype = x.dtype
    sign = LAYOUTS[dtype][0]
    if location in ROW_SITES:
        _, head, row, key = index
        if not bool(visible[0, 0, row, key]):
            return "masked"
        order = _row_order(x, visible, head, row)
        if location == "scores" and key == order[0] and tuple(bits) == (sign,):
            return "sign_argmax"
        return "top2" if key in order[:2] else "other"
    _, pos, head, channel = index
    largest = channel == int(x[0, pos, head].float().abs().argmax())
    if location in ("k", "v") and pos == 0 and largest and tuple(bits) == (sign,):
        return "sign_sink"
    if largest and all(b in upward_bits(float(x[index]), dtype) for b in bits):
        return "exp_up"
    return "other"


def clean_magnitude(location: str, x: torch.Tensor, visible: torch.Tensor | None) -> float:
    """The largest |value| of the clean tensor (visible entries only for scores and weights): a fault whose
    new value stays under 10x this is non-trivial."""
    x = x.float()
    if location in ROW_SITES:
        x = torch.where(visible, x, 0.0)
    return float(x.abs().max())
