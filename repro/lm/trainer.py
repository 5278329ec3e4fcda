"""The seed's training recipe, one loop for all three models, resumable after an interruption.

Seed 004, Part A: Adam at lr 1e-3; the lr halves when the validation loss has not improved for 2 epochs;
gradient-norm clipping 0.25; batch 20, validation batch 10; sequences of at most 256 tokens; training stops
after 5 epochs without improvement; the loss every 50 batches, TensorBoard.

Rounds. The recipe's patience counts validations. A round is the training between two validations: one
epoch at the gpu profile (the seed's recipe), ``eval_every_tokens`` fresh tokens at cpu, where each model
reads its N training tokens once and the same patience (2 rounds to halve, 5 to stop) acts within that pass.
Validation runs on the *selection slice*, which chooses the best round's weights and draws the learning
curve; the numbers a claim reports come from another slice (``repro.lm.run``).

Every round ends with a checkpoint (``last.pt``: model, optimizer, schedule, metrics, the hidden state carried
into the next round and the random-number state) and, when the selection loss improved, ``best.pt``. A run
started again in the same folder continues after the last finished round and ends with the same numbers as
a run never interrupted (a test checks it). Each checkpoint carries its provenance (model, vocabulary,
sequence length and recipe, the data's fingerprint, profile, code version) and a resume with anything else
is refused with a ``CheckpointError`` naming what differs, never silently reused. Checkpoints are state
dicts read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from repro.files import write_atomic, write_json_atomic
from repro.lm.corpus import Vocabulary, batchify, n_windows, window
from repro.lm.models import detach_state
from repro.profiles import LMSettings
from repro.timing import synchronizer

CHECKPOINT_FORMAT = 2  # bump when what a checkpoint holds, or how a run resumes from it, changes
LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"
RECIPE_FIELDS = ("seq_len", "batch_size", "eval_batch_size", "lr", "clip", "lr_patience", "stop_patience",
                 "max_epochs", "eval_every_tokens", "output_bias")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names it, what differs and what to do."""


@dataclass
class Plateau:
    """When to halve the lr and when to stop, from one selection loss per round.

    After ``lr_patience`` rounds without a new best (counted from the best or the last halving) the lr halves;
    after ``stop_patience`` rounds without a new best, training stops.
    """

    lr: float
    lr_patience: int = 2
    stop_patience: int = 5
    best: float = math.inf
    bad_rounds: int = 0  # since the best
    since_change: int = 0  # since the best or the last halving

    def update(self, val_loss: float) -> str:
        """-> "improved" | "halved" | "stop" | "wait"."""
        if val_loss < self.best:
            self.best, self.bad_rounds, self.since_change = val_loss, 0, 0
            return "improved"
        self.bad_rounds += 1
        self.since_change += 1
        if self.bad_rounds >= self.stop_patience:
            return "stop"
        if self.since_change >= self.lr_patience:
            self.lr, self.since_change = self.lr / 2, 0
            return "halved"
        return "wait"


@dataclass
class TrainingRun:
    """What one training run produced; the model it trained holds the best round's weights afterwards."""

    provenance: dict
    parameters: int
    # per round: round, epoch, tokens_seen, train_loss, val_loss, val_ppl, lr, event, train_seconds, train_tokens
    rounds: list[dict]
    selection_losses: list[torch.Tensor] = field(default_factory=list)  # per round: loss per selection token [n]
    batch_losses: list[tuple[int, float]] = field(default_factory=list)  # (batch, mean loss of the last log_every)
    stopped_early: bool = False
    resumed_from_round: int = 0

    @property
    def best_round(self) -> dict:
        return min(self.rounds, key=lambda r: r["val_loss"])

    @property
    def best_val_loss(self) -> float:
        return self.best_round["val_loss"]

    @property
    def final_train_loss(self) -> float:
        return self.rounds[-1]["train_loss"]

    @property
    def tokens_per_s(self) -> float:
        """Training throughput: tokens over the seconds of training steps only (validation excluded)."""
        seconds = sum(r["train_seconds"] for r in self.rounds)
        return sum(r["train_tokens"] for r in self.rounds) / seconds if seconds else math.nan


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits [batch, seq, vocab] against targets [batch, seq]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)


@torch.no_grad()
def token_losses(model: nn.Module, data: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Next-word loss of every target of batchified ``data`` [batch, steps] -> [batch, steps - 1] (row b,
    column t scores data[b, t + 1]), carrying the state from window to window. Row-major order is stream
    order, so a flattened result lines up with any other scorer of the same data."""
    was_training = model.training
    model.eval()
    state, out = None, []
    for i in range(n_windows(data, seq_len)):
        inputs, targets = window(data, seq_len, i)
        logits, state = model(inputs, state)
        out.append(lm_loss(logits, targets, "none").view(targets.shape).float().cpu())
    model.train(was_training)
    return torch.cat(out, dim=1)


def evaluate(model: nn.Module, data: torch.Tensor, seq_len: int) -> float:
    """Mean next-word loss over batchified ``data`` [batch, steps]."""
    return float(token_losses(model, data, seq_len).double().mean())


def fingerprint(ids: torch.Tensor) -> dict:
    """Token count and sha256 of a token stream: a resume on other data is refused."""
    return {"tokens": int(ids.numel()), "sha256": hashlib.sha256(ids.cpu().numpy().astype("int64").tobytes()).hexdigest()[:16]}


def code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("repro")
    except PackageNotFoundError:  # run from a source tree without installing
        package = "source"
    return {"checkpoint_format": CHECKPOINT_FORMAT, "repro": package}


def run_provenance(model: nn.Module, train_ids: torch.Tensor, select_ids: torch.Tensor, settings: LMSettings, *,
                   vocab: Vocabulary | None = None, profile: str = "", seed: int = 0) -> dict:
    """Everything a checkpoint must match to be resumed: the model, the vocabulary, the recipe (sequence length
    included), the data, the profile, the seed and the code version."""
    return {
        "model": model.config.as_dict(),
        "vocabulary": {"words": len(vocab), "sha256": vocab.sha256} if vocab else None,
        "recipe": {k: getattr(settings, k) for k in RECIPE_FIELDS},
        "train_data": fingerprint(train_ids),
        "selection_data": fingerprint(select_ids),
        "profile": profile,
        "seed": seed,
        "code": code_version(),
    }


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_checkpoint(saved: dict, provenance: dict, path: Path) -> None:
    """Refuse a checkpoint (as ``read_checkpoint`` returns it) of another model, vocabulary, recipe, data,
    profile, seed or code version."""
    there, here = _flat(saved["provenance"]), _flat(provenance)
    diff = [f"{k}: {there.get(k)!r} there, {here.get(k)!r} here" for k in sorted(set(there) | set(here))
            if there.get(k) != here.get(k)]
    if diff:
        raise CheckpointError(f"{path} was written with other settings ({'; '.join(diff[:4])}"
                              f"{f'; {len(diff) - 4} more' if len(diff) > 4 else ''}); use a fresh --out, or the "
                              "flags that wrote it.")


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (``weights_only``); one ``CheckpointError`` line when it is not one."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or a torn file: both mean "not a usable checkpoint"
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(err).__name__}); remove it to start afresh.") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT or "provenance" not in saved:
        raise CheckpointError(f"{path} is not a checkpoint of this version of repro.lm (format {CHECKPOINT_FORMAT}); "
                              "remove it or choose another folder.")
    return saved


def load_checkpoint(path: Path, provenance: dict) -> dict:
    """A checkpoint's contents, refusing one written with other settings."""
    saved = read_checkpoint(path)
    check_checkpoint(saved, provenance, path)
    return saved


def load_weights(model: nn.Module, weights: dict, path: Path) -> None:
    """``model.load_state_dict`` that turns mismatched weights (a config that lies about them) into one line."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: its weights do not fit the {model.config.kind} model its config describes "
                              f"({first}); the file is damaged or was edited.") from None


def _save(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def round_schedule(n_win: int, settings: LMSettings) -> list[tuple[int, int, int]]:
    """(epoch, first window, end window) of every round the recipe may run: one per epoch, or every
    ``eval_every_tokens`` training tokens (a remainder under half a round joins the epoch's last round)."""
    per_window = settings.batch_size * settings.seq_len
    step = n_win if settings.eval_every_tokens is None else max(1, round(settings.eval_every_tokens / per_window))
    starts = list(range(0, n_win, step))
    if len(starts) > 1 and n_win - starts[-1] < step / 2:
        starts.pop()
    ends = [*starts[1:], n_win]
    return [(epoch, start, end) for epoch in range(1, settings.max_epochs + 1) for start, end in zip(starts, ends)]


def train_lm(model: nn.Module, train_ids: torch.Tensor, select_ids: torch.Tensor, settings: LMSettings,
             work_dir: Path, *, provenance: dict | None = None, vocab: Vocabulary | None = None, progress: bool = False,
             tensorboard_dir: Path | None = None, stop_after_rounds: int | None = None, label: str = "") -> TrainingRun:
    """Train ``model`` on ``train_ids`` [n] with the seed's recipe, validating on ``select_ids`` [n] every round.

    ``work_dir`` holds the checkpoints and ``metrics.json``; a finished round found there is not redone.
    ``provenance`` (``run_provenance``; default: built from the arguments) is what a checkpoint there must
    match; ``vocab``'s words go into every checkpoint, so a checkpoint alone can be sampled from.
    ``stop_after_rounds`` ends the run early as an interruption would (for tests). The model ends with the
    weights of its best round.
    """
    work_dir = Path(work_dir)
    provenance = provenance or run_provenance(model, train_ids, select_ids, settings)
    train = batchify(train_ids, settings.batch_size)  # [20, steps]
    select = batchify(select_ids, settings.eval_batch_size)  # [10, steps]
    n_win = n_windows(train, settings.seq_len)
    schedule = round_schedule(n_win, settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    plateau = Plateau(settings.lr, settings.lr_patience, settings.stop_patience)
    run = TrainingRun(provenance, sum(p.numel() for p in model.parameters()), [])
    state, words = None, list(vocab.itos) if vocab else None
    if (work_dir / LAST).is_file():
        saved = load_checkpoint(work_dir / LAST, provenance)
        load_weights(model, saved["model"], work_dir / LAST)
        optimizer.load_state_dict(saved["optimizer"])
        plateau = Plateau(**saved["plateau"])
        run.rounds = saved["rounds"]
        run.selection_losses = list(saved["selection_losses"])
        run.batch_losses = [tuple(x) for x in saved["batch_losses"]]
        run.stopped_early = saved["stopped_early"]
        run.resumed_from_round = len(run.rounds)
        state = saved["state"]
        torch.set_rng_state(saved["rng"])
        if saved.get("cuda_rng") is not None and train.is_cuda:  # dropout on a GPU draws from its own generator
            torch.cuda.set_rng_state(saved["cuda_rng"], train.device)
    work_dir.mkdir(parents=True, exist_ok=True)
    writer = _tensorboard(tensorboard_dir)
    sync = synchronizer(train.device.type)
    batch_index = sum(end - start for _, start, end in schedule[: len(run.rounds)])
    try:
        for index, (epoch, start, end) in enumerate(schedule):
            if index < len(run.rounds):
                continue
            if run.stopped_early or (stop_after_rounds is not None and index >= stop_after_rounds):
                break
            for group in optimizer.param_groups:
                group["lr"] = plateau.lr
            if start == 0:
                state = None  # an epoch starts from nothing; rounds within it carry the state on
            model.train()
            total, count, recent, seconds = 0.0, 0, [], 0.0
            bar = tqdm(range(start, end), disable=not progress, desc=f"{label} round {index + 1}/{len(schedule)}".strip(),
                       leave=False)
            for i in bar:
                inputs, targets = window(train, settings.seq_len, i)
                sync()
                tick = time.perf_counter()
                state = detach_state(state)  # truncated back-propagation: gradients stop at the window
                logits, state = model(inputs, state)
                loss = lm_loss(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
                optimizer.step()
                value = float(loss.detach())  # synchronises
                seconds += time.perf_counter() - tick
                total, count = total + value * targets.numel(), count + targets.numel()
                recent.append(value)
                batch_index += 1
                if len(recent) == settings.log_every:  # the seed printed the loss every 50 batches
                    mean = sum(recent) / len(recent)
                    run.batch_losses.append((batch_index, mean))
                    bar.set_postfix(loss=f"{mean:.3f}", ppl=f"{math.exp(mean):.0f}")
                    if writer:
                        writer.add_scalar(f"train/loss_per_{settings.log_every}_batches", mean, batch_index)
                    recent = []
            losses = token_losses(model, select, settings.seq_len).flatten()
            val_loss, lr_used = float(losses.double().mean()), plateau.lr
            event = plateau.update(val_loss)
            run.stopped_early = event == "stop"
            seen = (run.rounds[-1]["tokens_seen"] if run.rounds else 0) + count
            run.rounds.append({
                "round": index + 1, "epoch": epoch, "tokens_seen": seen, "train_loss": total / count,
                "val_loss": val_loss, "val_ppl": math.exp(val_loss), "lr": lr_used, "event": event,
                "train_seconds": seconds, "train_tokens": count,
            })
            run.selection_losses.append(losses)
            if writer:
                for key in ("train_loss", "val_loss", "val_ppl", "lr"):
                    writer.add_scalar(f"round/{key}", run.rounds[-1][key], seen)
                writer.add_scalar("round/train_tokens_per_s", count / seconds, seen)
                writer.flush()
            if event == "improved":
                _save(work_dir / BEST, {"format": CHECKPOINT_FORMAT, "provenance": provenance, "vocabulary": words,
                                        "model": model.state_dict()})
            _save(work_dir / LAST, {
                "format": CHECKPOINT_FORMAT, "provenance": provenance, "vocabulary": words, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "plateau": asdict(plateau), "rounds": run.rounds,
                "selection_losses": run.selection_losses, "batch_losses": [list(x) for x in run.batch_losses],
                "stopped_early": run.stopped_early, "state": detach_state(state), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(train.device) if train.is_cuda else None,
            })
            write_json_atomic(work_dir / METRICS, {"provenance": provenance, "rounds": run.rounds})
    finally:
        if writer:
            writer.close()
    if (work_dir / BEST).is_file():
        load_weights(model, load_checkpoint(work_dir / BEST, provenance)["model"], work_dir / BEST)
    model.eval()
    return run


def _tensorboard(folder: Path | None):
    if folder is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the optional `tensorboard` extra is not installed
        return None
    return SummaryWriter(str(folder))
