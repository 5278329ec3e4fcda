"""One fault experiment, end to end: WikiText-2 windows, the clean baseline, the injected runs, the harm of
each fault and which detector flagged it with which checks.

The seed's flow (config -> model/data -> patch attention -> baseline run -> injected run -> bounds ->
violation detection -> save) with two economies that change no result: the clean run of a window is
made once (its residual stream at every layer is cached), and an injected run starts at the injected
layer from that cache, since the layers below it are untouched. Faults on the same window and layer run
as one batch, one fault per batch row: attention, normalisation and MLP act on each row alone, so a fault
cannot leak into another row. Both detectors watch every injected run.

Harm (fixed before any run; the issue's "harm that matters"): a fault is harmful when any logit becomes
NaN or Inf, or the top-1 prediction changes at a position where the clean prediction was confident (its
probability exceeds the runner-up's by at least ``MARGIN`` = 0.1), or KL(clean || faulty) of the next-token
distribution exceeds ``KL_HARM`` = 0.1 nats at any position (about the change from a 60/40 to an 80/20
choice). The raw count of positions whose top-1 changed by more than ``TOP1_NOISE`` logits (float noise
between attention implementations) is kept as ``top1_changed``, not judged. A harmful fault is
non-trivial when the logits stay finite and the corrupted value stays finite and under ``TRIVIAL_FACTOR``
= 10 times the largest clean magnitude at its site (``repro.sdc.strata.clean_magnitude``): the faults a
finiteness or size check alone cannot be expected to see.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.assets import wikitext2
from repro.sdc import strata
from repro.sdc.detection import DETECTORS, CallRecord, Detector
from repro.sdc.injection import FaultInjector, InjectionConfig, bits_class, injected_epsilon

MARGIN = 0.1  # clean probability margin (top-1 minus top-2) above which a top-1 change is harm
KL_HARM = 0.1  # nats: KL(clean || faulty) at any position above which a fault is harmful
TOP1_NOISE = 1e-3  # logits: a raw top-1 change must exceed float noise between attention implementations
TRIVIAL_FACTOR = 10.0  # a corrupted value at or above this many times the clean magnitude is trivially big


def wikitext_windows(tokenizer, n: int, length: int) -> torch.Tensor:
    """The first ``n`` consecutive ``length``-token windows of WikiText-2's test split: [n, length]."""
    lines, text, needed = wikitext2()["test"], [], n * length * 8  # ~4 characters per token, twice over
    for line in lines:
        if line.strip():
            text.append(line)
        if sum(map(len, text)) > needed:
            break
    ids = tokenizer("\n".join(text), return_tensors="pt")["input_ids"][0]
    if ids.numel() < n * length:
        raise ValueError(f"WikiText-2's test split gave {ids.numel()} tokens; {n} windows of {length} need more.")
    return ids[: n * length].view(n, length)


@dataclass
class Baseline:
    """The clean run of one window: what injected runs start from and are compared with."""

    ids: torch.Tensor  # [pos]
    resid_pre: list[torch.Tensor]  # per layer, [1, pos, d_model]
    resid_post: list[torch.Tensor]  # per layer, [1, pos, d_model]
    logits: torch.Tensor  # [pos, vocab]
    loss: float

    def __post_init__(self):
        logp = self.logits.float().log_softmax(-1)
        self.probs = logp.exp()  # [pos, vocab]
        self.neg_entropy = (self.probs * logp).sum(-1)  # [pos]: sum p log p
        top2 = self.probs.topk(2, dim=-1).values
        self.confident = (top2[:, 0] - top2[:, 1]) >= MARGIN  # [pos]
        self.top = self.logits.float().argmax(-1)  # [pos]


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per row: logits [b, pos, vocab], ids [pos] -> [b]."""
    logp = logits[:, :-1].float().log_softmax(-1)
    target = ids[1:].view(1, -1, 1).expand(logits.shape[0], -1, 1)
    return -logp.gather(-1, target).squeeze(-1).mean(-1)


def detectors_for(adapter: ModelAdapter, names=tuple(DETECTORS), envelopes: dict | None = None) -> dict[str, Detector]:
    """Fresh detectors; ``envelopes``: a cache shared by every detector of this model (weights only)."""
    envelopes = {} if envelopes is None else envelopes
    return {name: DETECTORS[name](adapter, envelopes) for name in names}


def clean_runs(adapter: ModelAdapter, windows: torch.Tensor, *, batch: int = 16, detectors=tuple(DETECTORS),
               envelopes: dict | None = None) -> tuple[list[Baseline], dict[str, list[CallRecord]]]:
    """Baselines of all windows, and each detector's record of every clean attention call (layer x window)."""
    envelopes = {} if envelopes is None else envelopes
    names = [hooks.resid_pre(layer) for layer in range(adapter.n_layers)]
    names += [hooks.resid_post(layer) for layer in range(adapter.n_layers)]
    baselines, calls = [], {name: [] for name in detectors}
    for start in range(0, len(windows), batch):
        ids = windows[start: start + batch]
        watching = detectors_for(adapter, detectors, envelopes)
        with _all_installed(watching.values()), hooks.caching(adapter, names) as cache:
            logits = adapter.forward(ids)
        for name, detector in watching.items():
            calls[name] += detector.calls
        losses = torch.stack([next_token_loss(logits[i: i + 1], ids[i])[0] for i in range(len(ids))])
        for i in range(len(ids)):
            baselines.append(Baseline(
                ids=ids[i],
                resid_pre=[cache[hooks.resid_pre(la)][i: i + 1] for la in range(adapter.n_layers)],
                resid_post=[cache[hooks.resid_post(la)][i: i + 1] for la in range(adapter.n_layers)],
                logits=logits[i], loss=float(losses[i]),
            ))
    return baselines, calls


@contextmanager
def _all_installed(detectors, layers=None) -> Iterator[None]:
    with ExitStack() as stack:
        for detector in detectors:
            stack.enter_context(detector.installed(layers))
        yield


class RowFaults:
    """Several injectors on one batch, each acting on its own row (index 0 of its slice is that row)."""

    def __init__(self, injectors: list[FaultInjector]):
        self.injectors = injectors
        self.visible: dict[int, torch.Tensor] = {}  # layer -> the mask the attention reported

    def hook_fns(self) -> dict[str, hooks.HookFn]:
        rows: dict[str, list[tuple[int, FaultInjector]]] = {}
        for row, injector in enumerate(self.injectors):
            rows.setdefault(injector.config.hook_name, []).append((row, injector))

        def inject(act: torch.Tensor, name: str) -> torch.Tensor:
            out = act.clone()
            layer = hooks.parse_hook_name(name)[1]
            visible = self.visible.get(layer)
            for row, injector in rows[name]:
                row_visible = None if visible is None else visible[row: row + 1] if visible.shape[0] > 1 else visible
                out[row: row + 1] = injector.inject(act[row: row + 1], row_visible)
            return out

        def see(act: torch.Tensor, name: str) -> None:
            self.visible[hooks.parse_hook_name(name)[1]] = act

        fns = {name: inject for name in rows}
        for layer in {i.config.layer for i in self.injectors}:
            fns[hooks.hook_name(hooks.ATTN_MASK, layer)] = see
        return fns


def harm(logits: torch.Tensor, baseline: Baseline) -> list[dict]:
    """The harm of each injected run (logits [b, pos, vocab]) against its window's baseline, one pass or
    three over the logits: KL(clean || faulty) = sum p log p - p . faulty + logsumexp(faulty)."""
    faulty = logits.float()
    lse = faulty.logsumexp(-1)  # [b, pos]: Inf or NaN when any logit of the position is
    nonfinite = ~torch.isfinite(lse).all(dim=-1)  # [b]
    kl = baseline.neg_entropy - torch.einsum("bpv,pv->bp", faulty, baseline.probs) + lse  # [b, pos]
    beaten = faulty.max(-1).values - faulty.gather(-1, baseline.top.expand(len(faulty), -1)[..., None]).squeeze(-1)
    changed = ~(beaten <= TOP1_NOISE)  # NaN counts as changed
    losses = next_token_loss(logits, baseline.ids)
    out = []
    for row in range(len(faulty)):
        kl_max = float(kl[row].max()) if not nonfinite[row] else math.inf
        loss = float(losses[row])
        confident_changed = int((changed[row] & baseline.confident).sum())
        out.append({"harmful": bool(nonfinite[row]) or confident_changed > 0 or not kl_max <= KL_HARM,
                    "nonfinite": bool(nonfinite[row]), "top1_changed": int(changed[row].sum()),
                    "top1_confident_changed": confident_changed,
                    "kl_max": kl_max if math.isfinite(kl_max) else None,
                    "loss_change": loss - baseline.loss if math.isfinite(loss) else None})
    return out


def _targeting(config: InjectionConfig, stratum: str) -> dict:
    """The injector's target and describe for a stratum (repro.sdc.strata)."""
    loc = config.location
    return {"target": partial(_choose, stratum, loc, tuple(config.bits)),
            "describe": lambda x, visible, index, bits: {
                "cell": strata.cell(loc, index, bits, x, visible),
                "clean_magnitude": strata.clean_magnitude(loc, x, visible)}}


def _choose(stratum, location, bits, x, visible, rng):
    return strata.choose(stratum, location, x, visible, rng, bits)


def run_faults(adapter: ModelAdapter, baseline: Baseline, configs: list[InjectionConfig], layer: int,
               window: int, *, strata_of: list[str] | None = None, detectors=tuple(DETECTORS),
               envelopes: dict | None = None) -> list[dict]:
    """Injected runs of ``configs`` (all at ``layer``, on one window), one per batch row; ``strata_of``
    names each config's stratum (default: uniform); ``envelopes``: the detectors' shared cache."""
    if any(c.layer != layer for c in configs):
        raise ValueError("run_faults: every config of a batch must target the same layer.")
    strata_of = strata_of or ["uniform"] * len(configs)
    injectors = [FaultInjector(c.check(adapter.model.dtype, adapter.n_layers), **_targeting(c, s))
                 for c, s in zip(configs, strata_of)]
    watching = detectors_for(adapter, detectors, envelopes)
    layers = range(layer, adapter.n_layers)
    hidden = baseline.resid_pre[layer].expand(len(configs), -1, -1)
    with hooks.hooks(adapter, RowFaults(injectors).hook_fns()), _all_installed(watching.values(), layers), \
            hooks.caching(adapter, [hooks.resid_post(la) for la in layers]) as cache:
        logits = adapter.logits(adapter.run_blocks(hidden, start=layer))
    verdicts = {name: (d.flagged(), d.fired(), _worst(d)) for name, d in watching.items()}
    harms = harm(logits, baseline)
    results = []
    for row, (config, injector, stratum) in enumerate(zip(configs, injectors, strata_of)):
        record = injector.history[0] if injector.history else None
        propagation = []
        for la in layers:
            clean = baseline.resid_post[la][0]
            diff = (cache[hooks.resid_post(la)][row] - clean).norm() / clean.norm()
            propagation.append(float(diff) if torch.isfinite(diff) else None)  # None: non-finite
        bits = tuple(record.bits) if record else tuple(config.bits)
        magnitude = record.notes.get("clean_magnitude") if record else None
        result = {
            "location": config.location, "layer": layer, "window": window, "stratum": stratum,
            "cell": record.notes.get("cell") if record else None, "bits": list(bits),
            "bit_class": bits_class(bits, adapter.model.dtype) if bits else None, "seed": config.seed,
            "index": list(record.index) if record else None,
            "before": record.before if record else None, "after": record.after if record else None,
            "clean_magnitude": magnitude, "epsilon": injected_epsilon(injector.history),
            **harms[row],
            "propagation": propagation,  # relative change of the residual stream, layers layer..last
        }
        after = record.after if record else math.nan
        result["nontrivial"] = bool(result["harmful"] and not result["nonfinite"] and math.isfinite(after)
                                    and magnitude is not None and abs(after) < TRIVIAL_FACTOR * magnitude)
        for name, (flagged, fired, worst) in verdicts.items():
            result[name] = {"detected": bool(flagged[row]),
                            "checks": [c for c in DETECTORS[name].CHECKS if bool(fired[c][row])],
                            "use": {c: float(worst[c][row]) for c in DETECTORS[name].CHECKS}}
        results.append(result)
    return results


def _worst(detector: Detector) -> dict[str, torch.Tensor]:
    """check -> [batch] the largest utilisation over the recorded calls (NaN when any was NaN)."""
    return {c: torch.stack([call.use[c] for call in detector.calls]).amax(dim=0) for c in detector.CHECKS}
