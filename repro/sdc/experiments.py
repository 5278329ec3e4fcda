"""One fault experiment, end to end: WikiText-2 windows, the clean baseline, the injected runs, the harm of
each fault and whether the detector flagged it.

The seed's flow (config -> model/data -> patch attention -> baseline run -> injected run -> bounds ->
violation detection -> save) with two economies that change no result: the clean run of a window is
made once (its residual stream at every layer is cached), and an injected run starts at the injected
layer from that cache, since the layers below it are untouched. Faults on the same window and layer run
as one batch, one fault per batch row: attention, normalisation and MLP act on each row alone, so a fault
cannot leak into another row.

Harm (fixed before any run): a fault is harmful when it changes the top-1 prediction at any position of
the window (the new winner beats the clean winner by more than ``TOP1_NOISE`` logits, far above the
1.2e-4 by which the exposed and the default attention differ on SmolLM2), or raises the window's mean
next-token loss by more than ``LOSS_RISE`` (1%), or makes any logit NaN or Inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repro import hooks
from repro.adapters import ModelAdapter
from repro.assets import wikitext2
from repro.sdc.detection import CHECKS, CallRecord, Detector
from repro.sdc.injection import FaultInjector, InjectionConfig, bit_class, injected_epsilon

LOSS_RISE = 0.01  # harmful: mean loss up by more than 1% (relative)
TOP1_NOISE = 1e-3  # logits: a top-1 change must exceed float noise between attention implementations


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


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy per row: logits [b, pos, vocab], ids [pos] -> [b]."""
    logp = logits[:, :-1].float().log_softmax(-1)
    target = ids[1:].view(1, -1, 1).expand(logits.shape[0], -1, 1)
    return -logp.gather(-1, target).squeeze(-1).mean(-1)


def clean_runs(adapter: ModelAdapter, windows: torch.Tensor, batch: int = 16) -> tuple[list[Baseline], list[CallRecord]]:
    """Baselines of all windows, and the detector's record of every clean attention call (layer x window)."""
    names = [hooks.resid_pre(layer) for layer in range(adapter.n_layers)]
    names += [hooks.resid_post(layer) for layer in range(adapter.n_layers)]
    baselines, calls = [], []
    for start in range(0, len(windows), batch):
        ids = windows[start: start + batch]
        detector = Detector(adapter)
        with detector.installed(), hooks.caching(adapter, names) as cache:
            logits = adapter.forward(ids)
        calls += detector.calls
        losses = next_token_loss(logits, ids[0]) if len(ids) == 1 else torch.stack(
            [next_token_loss(logits[i: i + 1], ids[i])[0] for i in range(len(ids))])
        for i in range(len(ids)):
            baselines.append(Baseline(
                ids=ids[i],
                resid_pre=[cache[hooks.resid_pre(la)][i: i + 1] for la in range(adapter.n_layers)],
                resid_post=[cache[hooks.resid_post(la)][i: i + 1] for la in range(adapter.n_layers)],
                logits=logits[i], loss=float(losses[i]),
            ))
    return baselines, calls


class RowFaults:
    """Several injectors on one batch, each acting on its own row (index 0 of its slice is that row)."""

    def __init__(self, injectors: list[FaultInjector]):
        self.injectors = injectors

    def hook_fns(self) -> dict[str, hooks.HookFn]:
        rows: dict[str, list[tuple[int, FaultInjector]]] = {}
        for row, injector in enumerate(self.injectors):
            rows.setdefault(injector.config.hook_name, []).append((row, injector))

        def inject(act: torch.Tensor, name: str) -> torch.Tensor:
            out = act.clone()
            for row, injector in rows[name]:
                out[row: row + 1] = injector.inject(act[row: row + 1])
            return out

        return {name: inject for name in rows}


def harm(logits: torch.Tensor, baseline: Baseline) -> dict:
    """The harm of one injected run (logits [pos, vocab]) against its window's baseline."""
    nonfinite = not bool(torch.isfinite(logits).all())
    clean_top = baseline.logits.argmax(-1)  # [pos]
    winner = logits.float().max(-1).values
    beaten = winner - logits.float().gather(-1, clean_top[:, None]).squeeze(-1)  # [pos]
    top1_changed = int((~(beaten <= TOP1_NOISE)).sum())  # NaN counts as changed
    loss = float(next_token_loss(logits[None], baseline.ids)[0])
    rise = (loss - baseline.loss) / baseline.loss
    harmful = nonfinite or top1_changed > 0 or not rise <= LOSS_RISE
    return {"harmful": harmful, "nonfinite": nonfinite, "top1_changed": top1_changed,
            "loss_rise": rise if rise == rise and abs(rise) != float("inf") else None}


def run_faults(adapter: ModelAdapter, baseline: Baseline, configs: list[InjectionConfig], layer: int,
               window: int) -> list[dict]:
    """Injected runs of ``configs`` (all at ``layer``, on one window), one per batch row."""
    if any(c.layer != layer for c in configs):
        raise ValueError("run_faults: every config of a batch must target the same layer.")
    injectors = [FaultInjector(c.check(adapter.model.dtype, adapter.n_layers)) for c in configs]
    detector = Detector(adapter)
    layers = range(layer, adapter.n_layers)
    hidden = baseline.resid_pre[layer].expand(len(configs), -1, -1)
    with hooks.hooks(adapter, RowFaults(injectors).hook_fns()), detector.installed(layers), \
            hooks.caching(adapter, [hooks.resid_post(la) for la in layers]) as cache:
        logits = adapter.logits(adapter.run_blocks(hidden, start=layer))
    flagged, fired = detector.flagged(), detector.fired()
    results = []
    for row, (config, injector) in enumerate(zip(configs, injectors)):
        record = injector.history[0] if injector.history else None
        propagation = []
        for la in layers:
            clean = baseline.resid_post[la][0]
            diff = (cache[hooks.resid_post(la)][row] - clean).norm() / clean.norm()
            propagation.append(float(diff) if torch.isfinite(diff) else None)
        results.append({
            "location": config.location, "layer": layer, "window": window, "bits": list(config.bits),
            "bit_class": bit_class(config.bits[0], adapter.model.dtype), "seed": config.seed,
            "index": list(record.index) if record else None,
            "before": record.before if record else None, "after": record.after if record else None,
            "epsilon": injected_epsilon(injector.history),
            **harm(logits[row], baseline),
            "detected": bool(flagged[row]),
            "checks": [check for check in CHECKS if bool(fired[check][row])],
            "propagation": propagation,  # relative change of the residual stream, layers layer..last
        })
    return results
