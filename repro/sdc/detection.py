"""The detectors: each checks every attention call from the call's own intermediates (no clean reference
run) and records which check fired for which batch element.

- ``BoundsDetector``: the bounds of ``repro.sdc.bounds`` (the claim's detector: envelopes, Cauchy-Schwarz,
  rows summing to one, the softmax interval, the Lambert-W gap, the output range, finiteness).
- ``ChecksumDetector``: the checksums of ``repro.sdc.checksums`` (ABFT, as ATTNChecker does) plus the same
  envelopes: the comparison.

A detector reads the sites of each layer through ``repro.hooks`` (q, k, v, the mask, scores, pattern
inside the exposed attention, z at the output projection's input; the checksum detector also the
``z_checksum`` column, which makes the attention compute it), keeps what a later check needs until the
layer's z arrives, and never changes an activation. Installed after an injector, it sees the corrupted
tensors the model goes on with, as a checker inside the kernel would. Several detectors can watch the
same run.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.sdc import bounds
from repro.sdc.bounds import HALF, Precision
from repro.sdc.checksums import MaskFacts, checksum_uses

ENVELOPES = ("envelope_q", "envelope_k", "envelope_v")
TRIVIAL = ("finite", *ENVELOPES)  # checks that see only a value's size: what "bound-only" recall excludes
_SITES = (hooks.ATTN_Q, hooks.ATTN_K, hooks.ATTN_V, hooks.ATTN_MASK, hooks.ATTN_SCORES, hooks.ATTN_PATTERN)


class CallRecord:
    """One attention call (one layer, one forward pass): each check's utilisation per batch element."""

    def __init__(self, layer: int, use: dict[str, torch.Tensor]):
        self.layer = layer
        self.use = use  # check -> [batch]; > 1 or NaN is a violation

    def violated(self) -> dict[str, torch.Tensor]:
        return {check: ~(use <= 1) for check, use in self.use.items()}

    def flagged(self) -> torch.Tensor:
        return torch.stack(list(self.violated().values())).any(dim=0)  # [batch]


class Detector:
    """``with detector.installed(layers): model(...)``; then ``detector.calls`` holds one CallRecord per
    attention call, ``detector.flagged()`` the batch elements any check flagged."""

    name = ""
    CHECKS: tuple[str, ...] = ()
    SITES: tuple[str, ...] = (*_SITES, hooks.ATTN_Z)

    def __init__(self, adapter: ModelAdapter, envelopes: dict[int, dict[str, torch.Tensor]] | None = None):
        """``envelopes``: a cache (layer -> bounds) shared with other detectors of the same model: the
        envelopes depend on the weights alone."""
        self.adapter = adapter
        self.precision = Precision(adapter.model.dtype)
        self.calls: list[CallRecord] = []
        self._envelopes = {} if envelopes is None else envelopes
        self._pending: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)

    def envelopes(self, layer: int) -> dict[str, torch.Tensor]:
        if layer not in self._envelopes:
            self._envelopes[layer] = bounds.envelopes(self.adapter, layer)
        return self._envelopes[layer]

    def scale(self, layer: int) -> float:
        """The scaling the model's attention module passes (GPT-2 may divide it by the layer number)."""
        return float(getattr(self.adapter.attention(layer), "scaling", self.adapter.d_head**-0.5))

    def causal(self, layer: int) -> bool:
        return bool(getattr(self.adapter.attention(layer), "is_causal", True))

    def installed(self, layers=None):
        """The hooks for ``layers`` (default: all) as a context manager."""
        layers = range(self.adapter.n_layers) if layers is None else layers
        return hooks.hooks(self.adapter, {hooks.hook_name(site, layer): self._observe
                                          for layer in layers for site in self.SITES})

    def _observe(self, act: torch.Tensor, name: str) -> None:
        site, layer = hooks.parse_hook_name(name)
        self._pending[layer][site] = act.detach()
        if site == hooks.ATTN_Z:
            self.calls.append(self.check(layer, **self._pending.pop(layer)))
        return None

    def check(self, layer: int, **sites: torch.Tensor) -> CallRecord:
        """All checks on one call; ``sites`` maps site names to tensors in hook layout."""
        env = self.envelopes(layer)
        qkv = [sites[s].float() for s in (hooks.ATTN_Q, hooks.ATTN_K, hooks.ATTN_V)]  # hook layout
        use = {f"envelope_{x}": bounds.envelope_use(t, env[x]) for x, t in zip("qkv", qkv)}
        q, k, v = (t.transpose(1, 2) for t in qkv)  # the model's layout
        use.update(self.uses(layer, q, k, v, sites))
        return CallRecord(layer, use)

    def uses(self, layer, q, k, v, sites) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def flagged(self) -> torch.Tensor:
        """[batch] bool: any check of any recorded call fired."""
        return torch.stack([c.flagged() for c in self.calls]).any(dim=0)

    def fired(self) -> dict[str, torch.Tensor]:
        """check -> [batch] bool over all recorded calls."""
        return {check: torch.stack([c.violated()[check] for c in self.calls]).any(dim=0) for check in self.CHECKS}


class BoundsDetector(Detector):
    name = "bounds"
    CHECKS = ("finite", *ENVELOPES, "cauchy_schwarz", "row_sum", "softmax_interval", "lambert_gap", "output_range")

    def uses(self, layer, q, k, v, sites) -> dict[str, torch.Tensor]:
        p = self.precision
        scores, pattern = sites[hooks.ATTN_SCORES].float(), sites[hooks.ATTN_PATTERN].float()
        z = sites[hooks.ATTN_Z].transpose(1, 2).float()  # [b, h, q, d]
        visible = sites[hooks.ATTN_MASK]  # [b | 1, 1, q, k]
        n = visible.sum(dim=-1, dtype=torch.float32)  # [b | 1, 1, q]
        live = n > 0
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # [b, h, k, d]
        return {
            "finite": bounds.finite_use(q, k, v, scores, pattern, z, visible, live),
            "cauchy_schwarz": bounds.cauchy_schwarz_use(q, k, scores, self.scale(layer), visible, p),
            "row_sum": bounds.row_sum_use(pattern, n, live, p),
            "softmax_interval": bounds.softmax_interval_use(scores, pattern, visible, n, live, p),
            "lambert_gap": bounds.lambert_gap_use(scores, pattern, visible, n, live, p),
            "output_range": bounds.output_range_use(z, v, visible, n, live, p, causal=self.causal(layer)),
        }


class ChecksumDetector(Detector):
    name = "checksum"
    CHECKS = (*ENVELOPES, "score_checksum", "weight_sum", "output_checksum")
    SITES = (*_SITES, hooks.ATTN_Z_CHECKSUM, hooks.ATTN_Z)
    _facts: tuple = (None, None, None)  # (visible, causal, MaskFacts) of the last mask seen

    def mask_facts(self, visible: torch.Tensor, causal: bool) -> MaskFacts:
        """Derived once per mask tensor: every layer of a forward pass sees the same one."""
        if self._facts[0] is not visible or self._facts[1] != causal:
            self._facts = (visible, causal, MaskFacts.of(visible, causal=causal))
        return self._facts[2]

    def uses(self, layer, q, k, v, sites) -> dict[str, torch.Tensor]:
        causal = self.causal(layer)
        return checksum_uses(
            q, k, v, sites[hooks.ATTN_SCORES].float(), sites[hooks.ATTN_PATTERN].float(),
            sites[hooks.ATTN_Z].transpose(1, 2).float(), sites[hooks.ATTN_Z_CHECKSUM].transpose(1, 2).float(),
            sites[hooks.ATTN_MASK], self.scale(layer), self.precision, causal=causal,
            half_masked=self.precision.dtype in HALF, facts=self.mask_facts(sites[hooks.ATTN_MASK], causal))


DETECTORS = {d.name: d for d in (BoundsDetector, ChecksumDetector)}
