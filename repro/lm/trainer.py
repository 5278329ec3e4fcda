"""The seed's training recipe, one loop for all three models, resumable after an interruption.

Seed 004, Part A: Adam at lr 1e-3; the lr halves when the validation loss has not improved for 2 epochs;
gradient-norm clipping 0.25; batch 20, validation batch 10; sequences of at most 256 tokens; training stops
after 5 epochs without improvement; loss and perplexity every epoch, the loss every 50 batches, TensorBoard.

Every epoch ends with a checkpoint (``last.pt``: model, optimizer, schedule, metrics and the random-number
state) and, when validation improved, ``best.pt`` (the model alone). A run started again in the same folder
continues after the last finished epoch and ends with the same numbers as a run never interrupted (a test
checks it). Checkpoints are state dicts read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from repro.files import write_atomic, write_json_atomic
from repro.lm.corpus import batchify, n_windows, windows
from repro.lm.models import detach_state
from repro.profiles import LMSettings

CHECKPOINT_FORMAT = 1
LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model being built; the message names both."""


@dataclass
class Plateau:
    """When to halve the lr and when to stop, from one validation loss per epoch.

    After ``lr_patience`` epochs without a new best (counted from the best or the last halving) the lr halves;
    after ``stop_patience`` epochs without a new best, training stops.
    """

    lr: float
    lr_patience: int = 2
    stop_patience: int = 5
    best: float = math.inf
    bad_epochs: int = 0  # since the best
    since_change: int = 0  # since the best or the last halving

    def update(self, val_loss: float) -> str:
        """-> "improved" | "halved" | "stop" | "wait"."""
        if val_loss < self.best:
            self.best, self.bad_epochs, self.since_change = val_loss, 0, 0
            return "improved"
        self.bad_epochs += 1
        self.since_change += 1
        if self.bad_epochs >= self.stop_patience:
            return "stop"
        if self.since_change >= self.lr_patience:
            self.lr, self.since_change = self.lr / 2, 0
            return "halved"
        return "wait"


@dataclass
class TrainingRun:
    """What one training run produced; the model it trained holds the best weights afterwards."""

    config: dict
    parameters: int
    epochs: list[dict]  # per epoch: epoch, train_loss, val_loss, train_ppl, val_ppl, lr, event, seconds, tokens
    batch_losses: list[tuple[int, float]] = field(default_factory=list)  # (batch, mean loss of the last log_every)
    stopped_early: bool = False
    resumed_from_epoch: int = 0

    @property
    def best_val_loss(self) -> float:
        return min(e["val_loss"] for e in self.epochs)

    @property
    def final_train_loss(self) -> float:
        return self.epochs[-1]["train_loss"]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits [batch, seq, vocab] against targets [batch, seq]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, seq_len: int) -> float:
    """Mean next-word loss over batchified ``data`` [batch, steps], carrying the state from window to window."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    for inputs, targets in windows(data, seq_len):
        logits, state = model(inputs, state)
        total += float(lm_loss(logits, targets, "sum"))
        count += targets.numel()
    model.train(was_training)
    return total / count


def _tensorboard(folder: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional `tensorboard` extra is not installed
        return None
    return SummaryWriter(str(folder / "tensorboard"))


def check_checkpoint(saved: dict, config: dict, path: Path) -> None:
    if saved.get("format") != CHECKPOINT_FORMAT or "config" not in saved:
        raise CheckpointError(f"{path} is not a checkpoint of repro.lm (format {CHECKPOINT_FORMAT}); remove it or choose another folder.")
    if saved["config"] != config:
        diff = {k: (saved["config"].get(k), v) for k, v in config.items() if saved["config"].get(k) != v}
        raise CheckpointError(
            f"{path} was written for another model ({', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in diff.items())}); "
            "use a fresh output folder or the matching --model/--corpus."
        )


def load_checkpoint(path: Path, config: dict) -> dict:
    """A checkpoint's contents, refusing one written for another model."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or a torn file: both mean "not a usable checkpoint"
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(err).__name__}); remove it to start afresh.") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is not a checkpoint of repro.lm; remove it or choose another folder.")
    check_checkpoint(saved, config, path)
    return saved


def _save(path: Path, payload: dict) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def train_lm(model: nn.Module, train_ids: torch.Tensor, valid_ids: torch.Tensor, settings: LMSettings,
             work_dir: Path, *, progress: bool = False, tensorboard: bool = True,
             stop_after_epochs: int | None = None, label: str = "") -> TrainingRun:
    """Train ``model`` on ``train_ids`` [n] with the seed's recipe, validating on ``valid_ids`` [n] each epoch.

    ``work_dir`` holds the checkpoints and ``metrics.json``; a finished epoch found there is not redone.
    ``stop_after_epochs`` ends the run early as an interruption would (for tests). The model ends with the
    weights of its best validation epoch.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    config = model.config.as_dict()
    train = batchify(train_ids, settings.batch_size)  # [20, steps]
    valid = batchify(valid_ids, settings.eval_batch_size)  # [10, steps]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    plateau = Plateau(settings.lr, settings.lr_patience, settings.stop_patience)
    run = TrainingRun(config, sum(p.numel() for p in model.parameters()), [])
    if (work_dir / LAST).is_file():
        saved = load_checkpoint(work_dir / LAST, config)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        plateau = Plateau(**saved["plateau"])
        run.epochs = saved["epochs"]
        run.batch_losses = [tuple(x) for x in saved["batch_losses"]]
        run.stopped_early = saved["stopped_early"]
        run.resumed_from_epoch = len(run.epochs)
        torch.set_rng_state(saved["rng"])
    writer = _tensorboard(work_dir, tensorboard)
    batch_index = len(run.epochs) * n_windows(train, settings.seq_len)
    try:
        while len(run.epochs) < settings.max_epochs and not run.stopped_early:
            if stop_after_epochs is not None and len(run.epochs) >= stop_after_epochs:
                break
            epoch = len(run.epochs) + 1
            for group in optimizer.param_groups:
                group["lr"] = plateau.lr
            start = time.perf_counter()
            model.train()
            state, total, count, recent = None, 0.0, 0, []
            bar = tqdm(windows(train, settings.seq_len), total=n_windows(train, settings.seq_len), disable=not progress,
                       desc=f"{label} epoch {epoch}".strip(), leave=False)
            for inputs, targets in bar:
                state = detach_state(state)  # truncated back-propagation: gradients stop at the window
                logits, state = model(inputs, state)
                loss = lm_loss(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
                optimizer.step()
                value = float(loss.detach())
                total, count = total + value * targets.numel(), count + targets.numel()
                recent.append(value)
                batch_index += 1
                if len(recent) == settings.log_every:  # the seed printed the loss every 50 batches
                    mean = sum(recent) / len(recent)
                    run.batch_losses.append((batch_index, mean))
                    bar.set_postfix(loss=f"{mean:.3f}", ppl=f"{math.exp(mean):.0f}")
                    if writer:
                        writer.add_scalar("train/loss_per_50_batches", mean, batch_index)
                    recent = []
            val_loss = evaluate(model, valid, settings.seq_len)
            train_loss = total / count
            lr_used = plateau.lr
            event = plateau.update(val_loss)
            run.stopped_early = event == "stop"
            run.epochs.append({
                "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "train_ppl": math.exp(train_loss),
                "val_ppl": math.exp(val_loss), "lr": lr_used, "event": event,
                "seconds": time.perf_counter() - start, "tokens": count,
            })
            if writer:
                for key in ("train_loss", "val_loss", "train_ppl", "val_ppl", "lr"):
                    writer.add_scalar(f"epoch/{key}", run.epochs[-1][key], epoch)
                writer.flush()
            if event == "improved":
                _save(work_dir / BEST, {"format": CHECKPOINT_FORMAT, "config": config, "model": model.state_dict()})
            _save(work_dir / LAST, {
                "format": CHECKPOINT_FORMAT, "config": config, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "plateau": asdict(plateau), "epochs": run.epochs,
                "batch_losses": [list(x) for x in run.batch_losses], "stopped_early": run.stopped_early,
                "rng": torch.get_rng_state(),
            })
            write_json_atomic(work_dir / METRICS, {"config": config, "epochs": run.epochs})
    finally:
        if writer:
            writer.close()
    if (work_dir / BEST).is_file():
        model.load_state_dict(load_checkpoint(work_dir / BEST, config)["model"])
    model.eval()
    return run
