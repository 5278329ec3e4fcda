"""Part C: fine-tuning a pretrained causal LM on PubMedQA, held-out perplexity before and after.

Each PQA-L record becomes one text, ``Question: ...\\nContext: ...\\nAnswer: <long answer>`` (the layout of
the seed's prompt), ended by the tokenizer's end-of-text token. The texts of each split are concatenated and
cut into blocks of ``seq_len`` tokens (as Hugging Face's ``run_clm`` example packs text), so no answer is
truncated away. Training uses the non-test ids, perplexity the ids of ``test_ground_truth.json``.

A plain loop replaces the seed's Hugging Face ``Trainer`` with the same defaults that matter: AdamW without
weight decay, linear warm-up then linear decay, gradient-norm clipping at 1.0, early stopping on the
held-out loss with the best weights restored.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from repro.profiles import FinetuneSettings

PROMPT = "Question: What causes COVID-19?\nContext: COVID-19 is caused by the SARS-CoV-2 virus.\nAnswer:"  # seed's


def pubmedqa_text(record: dict) -> str:
    return f"Question: {record['QUESTION']}\nContext: {' '.join(record['CONTEXTS'])}\nAnswer: {record['LONG_ANSWER']}"


def pubmedqa_splits(records: dict[str, dict], test_ids: frozenset[str] | None) -> tuple[list[str], list[str]]:
    """(train texts, test texts) in pubid order; without official test ids (hub copy), the last half is test."""
    ids = sorted(records, key=int)
    if test_ids is None:
        test_ids = frozenset(ids[len(ids) // 2 :])
    return ([pubmedqa_text(records[i]) for i in ids if i not in test_ids],
            [pubmedqa_text(records[i]) for i in ids if i in test_ids])


def pack(tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    """Token blocks [n_blocks, seq_len]: the texts joined by end-of-text, the tail that does not fill a block dropped."""
    eos = tokenizer.eos_token_id
    stream = [t for text in texts for t in [*tokenizer(text)["input_ids"], eos]]
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


@torch.no_grad()
def perplexity_loss(model: nn.Module, blocks: torch.Tensor, batch_size: int, device: str) -> float:
    """Mean next-token loss over blocks [n, seq] (every position but each block's first is predicted)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i : i + batch_size].to(device)
        logits = model(input_ids=ids).logits[:, :-1].float()  # [batch, seq - 1, vocab]
        total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"))
        count += ids[:, 1:].numel()
    return total / count


@torch.no_grad()
def continuation(model: nn.Module, tokenizer, prompt: str, new_tokens: int, device: str) -> str:
    """Greedy continuation of ``prompt`` (deterministic, so before and after compare like for like). End-of-text
    is held off for ``new_tokens`` tokens: an instruction-tuned model ends at once after "Answer:" otherwise."""
    model.eval()
    enc = tokenizer(prompt, return_tensors="pt").to(device)
    out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def lr_at(step: int, settings: FinetuneSettings, total_steps: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then linear decay to 0 at ``total_steps`` (HF's default)."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    return settings.lr * max(0.0, (total_steps - step) / max(1, total_steps - settings.warmup_steps))


@dataclass
class Finetuning:
    """What fine-tuning measured."""

    train_blocks: int
    eval_blocks: int
    steps: int
    loss_before: float
    loss_after: float
    generation_before: str
    generation_after: str
    losses: list[float] = field(default_factory=list)  # training loss per step
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss)
    stopped_early: bool = False

    @property
    def ppl_before(self) -> float:
        return math.exp(self.loss_before)

    @property
    def ppl_after(self) -> float:
        return math.exp(self.loss_after)

    @property
    def factor(self) -> float:
        return self.ppl_before / self.ppl_after


def finetune(pretrained: nn.Module, tokenizer, train_texts: list[str], test_texts: list[str],
             settings: FinetuneSettings, *, device: str = "cpu", progress: bool = False) -> Finetuning:
    """Fine-tune a copy of ``pretrained`` (left untouched) and measure held-out perplexity before and after."""
    train = pack(tokenizer, train_texts, settings.seq_len)
    held_out = pack(tokenizer, test_texts, settings.seq_len)[: settings.eval_blocks]
    if not len(train) or not len(held_out):
        raise ValueError(f"PubMedQA gave {len(train)} training and {len(held_out)} held-out blocks of {settings.seq_len} tokens.")
    model = copy.deepcopy(pretrained).to(device)
    model.requires_grad_(True)
    eval_batch = max(settings.batch_size, 4)
    before = perplexity_loss(model, held_out, eval_batch, device)
    gen_before = continuation(model, tokenizer, PROMPT, settings.new_tokens, device)

    steps_per_epoch = len(train) // settings.batch_size
    total = min(settings.max_steps or math.inf, steps_per_epoch * settings.max_epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    order = random.Random(settings.data_seed)
    losses, evals, best, best_state, bad, stopped = [], [(0, before)], before, None, 0, False
    bar = tqdm(total=total, disable=not progress, desc="fine-tune", leave=False)
    step = 0
    while step < total and not stopped:
        perm = list(range(len(train)))
        order.shuffle(perm)
        for i in range(0, steps_per_epoch * settings.batch_size, settings.batch_size):
            if step >= total:
                break
            model.train()
            ids = train[perm[i : i + settings.batch_size]].to(device)  # [batch, seq]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, settings, total)
            loss = model(input_ids=ids, labels=ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if settings.eval_every and step % settings.eval_every == 0 and step < total:
                evals.append((step, perplexity_loss(model, held_out, eval_batch, device)))
                if evals[-1][1] < best:
                    best, bad = evals[-1][1], 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
                    stopped = bad >= settings.patience
                    if stopped:
                        break
    bar.close()
    after = perplexity_loss(model, held_out, eval_batch, device)
    evals.append((step, after))
    if best_state is not None and best < after:  # the best weights, as load_best_model_at_end does
        model.load_state_dict(best_state)
        after = best
    gen_after = continuation(model, tokenizer, PROMPT, settings.new_tokens, device)
    return Finetuning(len(train), len(held_out), step, before, after, gen_before, gen_after, losses, evals, stopped)
