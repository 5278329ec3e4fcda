"""Fault injection: true IEEE-754 bit flips in attention intermediates, with a replayable history.

A flip XORs bits of the value's own binary representation, read through an integer view of the same
memory (int32 for float32, int16 for bfloat16 and float16), so an exponent flip can produce the huge
values, Infs and NaNs a real upset in a register or SRAM cell produces. (PyTorchFI flips bits of a value
quantised to 8-bit integers, where this cannot happen.)

The seed's concepts as dataclasses: ``InjectionConfig(location, layer, bits, index, probability, seed)``
says where and what to flip; ``FaultInjector(config).inject(tensor)`` flips it and appends an
``InjectionRecord`` (location, layer, call, index, bits, value before and after) to ``history``;
``FaultInjector.replaying(history)`` repeats exactly those flips. A ``target`` (``repro.sdc.strata``) may
choose the element and the bits from the clean tensor instead of a uniform draw, and ``describe`` note
what it hit (its cell, the clean magnitude) in the record.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from repro import hooks
from repro.adapters import ModelAdapter

# The seed's six locations -> the hook site the fault is injected at (the tensor the model goes on with).
LOCATIONS = {
    "q": hooks.ATTN_Q,
    "k": hooks.ATTN_K,
    "v": hooks.ATTN_V,
    "scores": hooks.ATTN_SCORES,  # scaled scores plus mask, before softmax
    "weights": hooks.ATTN_PATTERN,  # softmax output
    "out": hooks.ATTN_Z,  # attention output before the output projection
}

# Bit layout (sign, exponent, mantissa): bit numbers from the least significant.
LAYOUTS = {
    torch.float32: (31, range(23, 31), range(0, 23)),
    torch.bfloat16: (15, range(7, 15), range(0, 7)),
    torch.float16: (15, range(10, 15), range(0, 10)),
}
_INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}
BIT_CLASSES = ("sign", "exponent", "mantissa")


def n_bits(dtype: torch.dtype) -> int:
    if dtype not in LAYOUTS:
        raise ValueError(f"Bit flips support {', '.join(str(d) for d in LAYOUTS)}; got {dtype}.")
    return torch.finfo(dtype).bits


def bit_class(bit: int, dtype: torch.dtype = torch.float32) -> str:
    """'sign', 'exponent' or 'mantissa' for a bit number of ``dtype``."""
    check_bit(bit, dtype)
    sign, exponent, _ = LAYOUTS[dtype]
    return "sign" if bit == sign else "exponent" if bit in exponent else "mantissa"


def bits_class(bits, dtype: torch.dtype = torch.float32) -> str:
    """The class of a multi-bit fault, by all its bits: 'exponent', or 'exponent+mantissa', ... (in the
    order sign, exponent, mantissa)."""
    classes = {bit_class(b, dtype) for b in bits}
    return "+".join(c for c in BIT_CLASSES if c in classes)


def check_bit(bit: int, dtype: torch.dtype) -> int:
    width = n_bits(dtype)
    if not 0 <= bit < width:
        raise ValueError(f"Bit {bit} is out of range for {str(dtype).removeprefix('torch.')} ({width} bits: 0..{width - 1}).")
    return bit


def flip_bits(tensor: torch.Tensor, index: tuple[int, ...], bits: tuple[int, ...]) -> torch.Tensor:
    """A copy of ``tensor`` with ``bits`` of the element at ``index`` flipped (XOR on its integer view)."""
    check_index(index, tuple(tensor.shape))
    width = n_bits(tensor.dtype)
    mask = 0
    for bit in bits:
        mask |= 1 << check_bit(bit, tensor.dtype)
    if mask >= 1 << (width - 1):  # the sign bit: the signed integer view needs a negative mask
        mask -= 1 << width
    flipped = tensor.clone()
    ints = flipped.view(_INT_VIEW[tensor.dtype])  # same memory, integer dtype
    ints[index] ^= mask
    return flipped


def check_index(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ValueError(f"Index {tuple(index)} is out of bounds for a tensor of shape {shape}.")
    return tuple(index)


@dataclass(frozen=True)
class InjectionConfig:
    """One fault: flip ``bits`` at ``location`` of attention layer ``layer``, at ``index`` (in the hook
    site's layout, see ``repro.hooks``) or, when None, at an index drawn from ``seed`` (or chosen by the
    injector's target, with the bits too when ``bits`` is empty); on each call with probability
    ``probability``."""

    location: str
    layer: int
    bits: tuple[int, ...]
    index: tuple[int, ...] | None = None
    probability: float = 1.0
    seed: int = 0
    enabled: bool = True

    def __post_init__(self):
        if self.location not in LOCATIONS:
            raise ValueError(f"Unknown location {self.location!r}; valid locations: {', '.join(LOCATIONS)}.")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Probability {self.probability} is outside [0, 1].")
        if any(b < 0 for b in self.bits) or self.layer < 0:
            raise ValueError(f"Bits and layer must be non-negative (bits {self.bits}, layer {self.layer}).")

    def check(self, dtype: torch.dtype, n_layers: int) -> InjectionConfig:
        """Refuse bits the dtype lacks and layers the model lacks, before any forward pass."""
        for bit in self.bits:
            check_bit(bit, dtype)
        if self.layer >= n_layers:
            raise ValueError(f"Layer {self.layer} is outside 0..{n_layers - 1} for this model.")
        return self

    @property
    def hook_name(self) -> str:
        return hooks.hook_name(LOCATIONS[self.location], self.layer)


@dataclass(frozen=True)
class InjectionRecord:
    location: str
    layer: int
    call: int  # the how-many-th call of the site (0-based) while the injector was installed
    index: tuple[int, ...]
    bits: tuple[int, ...]
    before: float
    after: float
    notes: dict = field(default_factory=dict)  # what ``describe`` said about the clean tensor


# (clean tensor of one row, visible [1, 1, q, k] or None, rng) -> (index, bits)
Target = Callable[[torch.Tensor, "torch.Tensor | None", random.Random], tuple[tuple[int, ...], tuple[int, ...]]]
# (clean tensor, visible, index, bits) -> notes for the record
Describe = Callable[[torch.Tensor, "torch.Tensor | None", tuple[int, ...], tuple[int, ...]], dict]


@dataclass
class FaultInjector:
    config: InjectionConfig
    history: list[InjectionRecord] = field(default_factory=list)
    _replay: dict[int, InjectionRecord] | None = None
    calls: int = 0
    target: Target | None = None
    describe: Describe | None = None

    def __post_init__(self):
        self._rng = random.Random(self.config.seed)
        if not self.config.bits and self.target is None and self._replay is None:
            raise ValueError("An injection needs at least one bit to flip (or a target that chooses them).")

    @classmethod
    def replaying(cls, config: InjectionConfig, history: list[InjectionRecord]) -> FaultInjector:
        """An injector that repeats ``history`` exactly (same calls, indices and bits), drawing nothing."""
        return cls(config, _replay={r.call: r for r in history})

    def inject(self, tensor: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor with this call's fault (a copy), or the tensor itself when no fault fires. ``visible``
        (scores and weights): which keys each query may see, for a target that needs it."""
        call, self.calls = self.calls, self.calls + 1
        if not self.config.enabled:
            return tensor
        if self._replay is not None:
            if call not in self._replay:
                return tensor
            index, bits = self._replay[call].index, self._replay[call].bits
        else:
            if self.config.probability < 1.0 and self._rng.random() >= self.config.probability:
                return tensor
            if self.config.index is not None:
                index, bits = self.config.index, self.config.bits
            elif self.target is not None:
                index, bits = self.target(tensor, visible, self._rng)
            else:
                index, bits = tuple(self._rng.randrange(n) for n in tensor.shape), self.config.bits
        flipped = flip_bits(tensor, index, bits)
        notes = self.describe(tensor, visible, tuple(index), tuple(bits)) if self.describe else {}
        self.history.append(InjectionRecord(self.config.location, self.config.layer, call, tuple(index), tuple(bits),
                                            float(tensor[index]), float(flipped[index]), notes))
        return flipped

    def hook_fns(self) -> dict[str, hooks.HookFn]:
        """``{hook name: fn}`` for ``repro.hooks.hooks`` (scores and weights: the mask site too, which the
        attention reaches first)."""
        seen: dict[str, torch.Tensor] = {}
        fns = {self.config.hook_name: lambda act, _name: self.inject(act, seen.get("visible"))}
        if self.config.location in ("scores", "weights"):
            fns[hooks.hook_name(hooks.ATTN_MASK, self.config.layer)] = lambda act, _n: seen.__setitem__("visible", act)
        return fns


def site_shape(adapter: ModelAdapter, location: str, n_pos: int) -> tuple[int, ...]:
    """The shape a fault's index lives in, for one sequence of ``n_pos`` tokens (hook layout)."""
    if location in ("q", "out"):
        return (1, n_pos, adapter.n_heads, adapter.d_head)
    if location in ("k", "v"):
        return (1, n_pos, adapter.n_kv_heads, adapter.d_head)
    return (1, adapter.n_heads, n_pos, n_pos)


def injected_epsilon(history: list[InjectionRecord]) -> float:
    """The seed's ``compute_injected_epsilon``: the largest |after - before| of the injections (inf when a
    value became non-finite)."""
    if not history:
        return 0.0
    return max(abs(r.after - r.before) if torch.isfinite(torch.tensor([r.before, r.after])).all() else float("inf")
               for r in history)


def installed(adapter: ModelAdapter, injector: FaultInjector):
    """``with installed(adapter, injector): ...`` runs the model with the injector's fault."""
    injector.config.check(adapter.model.dtype, adapter.n_layers)
    return hooks.hooks(adapter, injector.hook_fns())
