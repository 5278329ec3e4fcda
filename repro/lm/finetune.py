"""Part C: fine-tuning a pretrained causal LM on PubMedQA; held-out loss before and after, token by token.

Texts. Each PQA-L record becomes ``Question: ...\\nContext: ...\\nAnswer: <long answer>`` (the layout of the
seed's prompt), ended by the tokenizer's end-of-text token; the records of a split are concatenated and cut
into blocks of ``seq_len`` tokens (as Hugging Face's ``run_clm`` example packs text). Training reads the
non-test ids (the last ``select_blocks`` of them are kept aside for early stopping); the reported blocks are
spread evenly across the stream of the test ids (``test_ground_truth.json``), not its first records.

Template and content. The layout's tokens (``Question:``, ``\\nContext:``, ``\\nAnswer:``, end-of-text) repeat in
every record; a model learns them in a few steps and their gain says nothing about biomedical text. Every token
is marked template or content as the records are tokenised (piece by piece, so the mark is exact) and the
loss change is measured on each kind; the content tokens carry the claim.

Control. As many WikiText-2 validation blocks are scored before and after. The model here stands in for
GPT-2: SmolLM2-135M-Instruct, de-quantised from Q4_1, may gain on any text from a fine-tune that repairs
quantisation error or instruction-tuned habits; the control measures that part.

Training. ``method="lora"`` (cpu): LoRA (Hu et al. 2021, through ``peft``) of rank ``lora_r`` on every linear
projection of every block, the rest frozen. ``method="full"`` (gpu): every weight, the seed's recipe. Both:
AdamW without weight decay, linear warm-up then linear decay, gradient-norm clipping 1.0 (the Hugging Face
``Trainer`` defaults the seed used) and, when ``eval_every`` is set, early stopping on the selection blocks
with the best weights restored.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from repro.profiles import FinetuneSettings
from repro.timing import synchronizer

PROMPT = "Question: What causes COVID-19?\nContext: COVID-19 is caused by the SARS-CoV-2 virus.\nAnswer:"  # seed's
TEMPLATE = ("Question:", "\nContext:", "\nAnswer:")

Document = list[tuple[str, bool]]  # (piece of text, is template)


def pubmedqa_text(record: dict) -> str:
    return "".join(piece for piece, _ in pubmedqa_pieces(record))


def pubmedqa_pieces(record: dict) -> Document:
    """A record as pieces of text, the layout's marked: each content piece starts with a space or follows the
    layout's colon, so tokenising piece by piece cuts where the tokenizer would cut anyway."""
    q, c, a = (record["QUESTION"], " ".join(record["CONTEXTS"]), record["LONG_ANSWER"])
    return [(TEMPLATE[0], True), (f" {q}", False), (TEMPLATE[1], True), (f" {c}", False), (TEMPLATE[2], True),
            (f" {a}", False)]


def pubmedqa_splits(records: dict[str, dict], test_ids: frozenset[str] | None) -> tuple[list[Document], list[Document]]:
    """(train documents, test documents) in pubid order; without official test ids (hub copy), the last half is test."""
    ids = sorted(records, key=int)
    if test_ids is None:
        test_ids = frozenset(ids[len(ids) // 2 :])
    return ([pubmedqa_pieces(records[i]) for i in ids if i not in test_ids],
            [pubmedqa_pieces(records[i]) for i in ids if i in test_ids])


def pack(tokenizer, documents: list[Document], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(token blocks [n_blocks, seq_len], template mask [n_blocks, seq_len]): the documents joined by end-of-text
    (a template token), the tail that does not fill a block dropped."""
    ids, template = [], []
    for document in documents:
        for piece, is_template in [*document, (None, True)]:
            piece_ids = [tokenizer.eos_token_id] if piece is None else tokenizer(piece)["input_ids"]
            ids += piece_ids
            template += [is_template] * len(piece_ids)
    n = len(ids) // seq_len
    return (torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len),
            torch.tensor(template[: n * seq_len], dtype=torch.bool).view(n, seq_len))


def spread(n_total: int, k: int | None) -> list[int]:
    """``k`` block indices spread evenly over ``n_total`` (all of them when ``k`` is None or larger)."""
    if k is None or k >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, k)})


@torch.no_grad()
def token_losses(model: nn.Module, blocks: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    """Next-token loss of every position but each block's first: blocks [n, seq] -> [n, seq - 1] (float64)."""
    model.eval()
    out = []
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i : i + batch_size].to(device)
        logits = model(input_ids=ids).logits[:, :-1].float()  # [batch, seq - 1, vocab]
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [batch, seq - 1]
        out.append(loss.double().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def continuation(model: nn.Module, tokenizer, prompt: str, new_tokens: int, device: str) -> str:
    """Greedy continuation of ``prompt`` (deterministic, so before and after compare like for like). End-of-text
    is held off for ``new_tokens`` tokens: an instruction-tuned model ends at once after "Answer:" otherwise."""
    if new_tokens < 1:
        return ""
    model.eval()
    enc = tokenizer(prompt, return_tensors="pt").to(device)
    out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def lr_at(step: int, settings: FinetuneSettings, total_steps: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then linear decay to 0 at ``total_steps`` (HF's default)."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    return settings.lr * max(0.0, (total_steps - step) / max(1, total_steps - settings.warmup_steps))


@dataclass
class Finetuning:
    """What fine-tuning measured: per-token losses before and after on the same tokens."""

    method: str
    trainable_parameters: int
    train_blocks: int
    steps: int
    held_before: np.ndarray  # [blocks, seq - 1] loss of each held-out PubMedQA target token
    held_after: np.ndarray
    held_template: np.ndarray  # [blocks, seq - 1] True where the target token belongs to the layout
    control_before: np.ndarray  # [blocks, seq - 1] the WikiText-2 control
    control_after: np.ndarray
    generation_before: str
    generation_after: str
    train_seconds: float  # optimizer steps only
    losses: list[float] = field(default_factory=list)  # training loss per step
    evals: list[tuple[int, float]] = field(default_factory=list)  # (step, selection loss), when early stopping
    stopped_early: bool = False

    @property
    def eval_blocks(self) -> int:
        return len(self.held_before)

    @property
    def loss_before(self) -> float:
        return float(self.held_before.mean())

    @property
    def loss_after(self) -> float:
        return float(self.held_after.mean())

    @property
    def ppl_before(self) -> float:
        return math.exp(self.loss_before)

    @property
    def ppl_after(self) -> float:
        return math.exp(self.loss_after)

    @property
    def factor(self) -> float:
        """All held-out tokens, before ÷ after: the seed's kind of number."""
        return self.ppl_before / self.ppl_after


def adapted(pretrained: nn.Module, settings: FinetuneSettings) -> nn.Module:
    """A trainable copy of ``pretrained`` (left untouched): LoRA adapters on every linear projection, or all weights."""
    model = copy.deepcopy(pretrained)
    if settings.method == "full":
        return model.requires_grad_(True)
    if settings.method != "lora":
        raise ValueError(f"Unknown fine-tuning method {settings.method!r}; valid: lora, full.")
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.data_seed)  # LoRA's A matrices start random; B starts at zero, so nothing moves yet
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                        target_modules="all-linear", task_type="CAUSAL_LM")  # all-linear leaves the output layer out
    return get_peft_model(model, config)


def control_blocks(tokenizer, lines: list[str], seq_len: int, k: int) -> torch.Tensor:
    """``k`` blocks of WikiText-2 validation text, spread over it: [k, seq_len]."""
    ids = tokenizer("\n".join(lines))["input_ids"]
    blocks = torch.tensor(ids[: len(ids) // seq_len * seq_len], dtype=torch.long).view(-1, seq_len)
    return blocks[spread(len(blocks), k)]


def finetune(pretrained: nn.Module, tokenizer, train_docs: list[Document], test_docs: list[Document],
             control_lines: list[str], settings: FinetuneSettings, *, device: str = "cpu",
             progress: bool = False) -> Finetuning:
    """Fine-tune a copy of ``pretrained`` and score the same held-out and control tokens before and after."""
    train, _ = pack(tokenizer, train_docs, settings.seq_len)
    train, select = (train[: -settings.select_blocks], train[-settings.select_blocks :]) if settings.select_blocks else (train, train[:0])
    test, test_template = pack(tokenizer, test_docs, settings.seq_len)
    keep = spread(len(test), settings.eval_blocks)
    held, template = test[keep], test_template[keep][:, 1:]
    control = control_blocks(tokenizer, control_lines, settings.seq_len, len(held))
    if not len(train) or not len(held) or len(control) != len(held):
        raise ValueError(f"PubMedQA and WikiText-2 gave {len(train)} training, {len(held)} held-out and {len(control)} "
                         f"control blocks of {settings.seq_len} tokens; need some of each, as many control as held-out.")
    model = adapted(pretrained, settings).to(device)
    batch = max(settings.batch_size, 4)
    held_before, control_before = token_losses(model, held, batch, device), token_losses(model, control, batch, device)
    gen_before = continuation(model, tokenizer, PROMPT, settings.new_tokens, device)

    steps_per_epoch = len(train) // settings.batch_size
    total = min(settings.max_steps or math.inf, steps_per_epoch * settings.max_epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    order, sync = random.Random(settings.data_seed), synchronizer(device)
    losses, evals, seconds = [], [], 0.0
    best, best_state, bad, stopped, step = math.inf, None, 0, False, 0
    bar = tqdm(total=total, disable=not progress, desc=f"fine-tune ({settings.method})", leave=False)
    while step < total and not stopped:
        perm = list(range(len(train)))
        order.shuffle(perm)
        for i in range(0, steps_per_epoch * settings.batch_size, settings.batch_size):
            if step >= total or stopped:
                break
            model.train()
            ids = train[perm[i : i + settings.batch_size]].to(device)  # [batch, seq]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, settings, total)
            sync()
            tick = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))  # synchronises
            seconds += time.perf_counter() - tick
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if settings.eval_every and len(select) and step % settings.eval_every == 0:
                evals.append((step, float(token_losses(model, select, batch, device).mean())))
                if evals[-1][1] < best:
                    best, bad = evals[-1][1], 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
                    stopped = bad >= settings.patience
    bar.close()
    if best_state is not None and stopped:  # the best weights, as load_best_model_at_end does
        model.load_state_dict(best_state)
    return Finetuning(
        method=settings.method, trainable_parameters=sum(p.numel() for p in params), train_blocks=len(train),
        steps=step, held_before=held_before, held_after=token_losses(model, held, batch, device),
        held_template=template.numpy(), control_before=control_before,
        control_after=token_losses(model, control, batch, device), generation_before=gen_before,
        generation_after=continuation(model, tokenizer, PROMPT, settings.new_tokens, device), train_seconds=seconds,
        losses=losses, evals=evals, stopped_early=stopped,
    )
