"""The detector: checks every attention call against the bounds of ``repro.sdc.bounds``, from the call's
own intermediates (no clean reference run), and records which check fired for which batch element.

It reads the six sites of each layer through ``repro.hooks`` (q, k, v, scores, pattern inside the exposed
attention, z at the output projection's input), keeps what a later check needs until the layer's z
arrives, and never changes an activation. Installed after an injector, it sees the corrupted tensors the
model goes on with, as a checker inside the kernel would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.sdc import bounds

CHECKS = ("finite", "envelope_q", "envelope_k", "envelope_v", "cauchy_schwarz", "row_sum", "softmax_interval",
          "lambert_gap", "output_range")


@dataclass
class CallRecord:
    """One attention call (one layer, one forward pass): each check's utilisation per batch element."""

    layer: int
    use: dict[str, torch.Tensor]  # check -> [batch]; > 1 or NaN is a violation

    def violated(self) -> dict[str, torch.Tensor]:
        return {check: ~(use <= 1) for check, use in self.use.items()}

    def flagged(self) -> torch.Tensor:
        return torch.stack(list(self.violated().values())).any(dim=0)  # [batch]


@dataclass
class Detector:
    """``with detector.installed(layers): model(...)``; then ``detector.calls`` holds one CallRecord per
    attention call, ``detector.flagged()`` the batch elements any check flagged."""

    adapter: ModelAdapter
    causal: bool = True  # GPT-2 and LLaMA: key j is visible to query i iff j <= i (+ prefix length)
    calls: list[CallRecord] = field(default_factory=list)

    def __post_init__(self):
        self._envelopes: dict[int, dict[str, torch.Tensor]] = {}
        self._pending: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        self.u = bounds.unit_roundoff(self.adapter.model.dtype)
        self.scale = self.adapter.d_head**-0.5

    def envelopes(self, layer: int) -> dict[str, torch.Tensor]:
        if layer not in self._envelopes:
            self._envelopes[layer] = bounds.envelopes(self.adapter, layer)
        return self._envelopes[layer]

    def installed(self, layers=None):
        """The hooks for ``layers`` (default: all) as a context manager."""
        layers = range(self.adapter.n_layers) if layers is None else layers
        fns = {}
        for layer in layers:
            for site in (*hooks.ATTENTION_SITES, hooks.ATTN_Z):
                fns[hooks.hook_name(site, layer)] = self._observe
        return hooks.hooks(self.adapter, fns)

    def _observe(self, act: torch.Tensor, name: str) -> None:
        site, layer = hooks.parse_hook_name(name)
        self._pending[layer][site] = act.detach()
        if site == hooks.ATTN_Z:
            self.calls.append(self.check(layer, **self._pending.pop(layer)))
        return None

    def check(self, layer: int, **sites: torch.Tensor) -> CallRecord:
        """All checks on one call; ``sites`` maps site names to tensors in hook layout."""
        q, k, v = (sites[s].transpose(1, 2).float() for s in (hooks.ATTN_Q, hooks.ATTN_K, hooks.ATTN_V))
        scores, pattern = sites[hooks.ATTN_SCORES].float(), sites[hooks.ATTN_PATTERN].float()
        z = sites[hooks.ATTN_Z].transpose(1, 2).float()  # [b, h, q, d]
        env = self.envelopes(layer)
        use = {
            "finite": bounds.finite_use(q, k, v, scores, pattern, z),
            "envelope_q": bounds.envelope_use(sites[hooks.ATTN_Q], env["q"]),
            "envelope_k": bounds.envelope_use(sites[hooks.ATTN_K], env["k"]),
            "envelope_v": bounds.envelope_use(sites[hooks.ATTN_V], env["v"]),
        }
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # [b, h, k, d]
        n_q, n_k = scores.shape[-2:]
        if self.causal:
            visible = torch.ones(n_q, n_k, dtype=torch.bool, device=scores.device).tril(n_k - n_q)
        else:  # read the mask off the scores: masked entries carry the dtype's minimum
            visible = scores > torch.finfo(scores.dtype).min / 2
        n = visible.sum(dim=-1).to(scores.dtype)  # [q] or [b, h, q]
        use["cauchy_schwarz"] = bounds.cauchy_schwarz_use(q, k, scores, self.scale, visible, self.u)
        use["row_sum"] = bounds.row_sum_use(pattern, n, self.u)
        use["softmax_interval"] = bounds.softmax_interval_use(scores, pattern, visible, n, self.u)
        use["lambert_gap"] = bounds.lambert_gap_use(scores, pattern, visible, n, self.u)
        use["output_range"] = bounds.output_range_use(z, v, visible, n, self.u, causal=self.causal)
        return CallRecord(layer, use)

    def flagged(self) -> torch.Tensor:
        """[batch] bool: any check of any recorded call fired."""
        return torch.stack([c.flagged() for c in self.calls]).any(dim=0)

    def fired(self) -> dict[str, torch.Tensor]:
        """check -> [batch] bool over all recorded calls."""
        return {check: torch.stack([c.violated()[check] for c in self.calls]).any(dim=0) for check in CHECKS}
