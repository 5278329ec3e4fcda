"""Benchmark: training and evaluation throughput of our LSTM and Transformer against the same models built
with pytorch/examples' ``word_language_model`` settings, measured side by side in one run.

The reference models follow that example's layout (written here, not copied): sequence-first tensors,
``nn.LSTM`` / a post-norm ``nn.TransformerEncoder`` with a float ``-inf`` causal mask, log-softmax outputs
scored by ``NLLLoss``. Both sides use the seed's sizes (embedding 256, 4 layers, 8 heads, feed-forward 1024,
dropout 0.5), PTB's 10k vocabulary, batch 20, the profile's BPTT, and the same Adam step with clipping 0.25,
so a ratio compares the models and their loss path only. Goal: ours / examples >= 1.0x.

Memory: on CUDA the peak allocated bytes; on CPU the growth of the resident set over its level before the
variant (``repro.memory.RSSPeak``, sampled every 5 ms).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.lm.models import LMConfig, PositionalEncoding, build_model
from repro.memory import RSSPeak
from repro.profiles import Profile
from repro.timing import synchronizer, time_calls

VOCAB = 10_000  # PTB's
WARMUP, REPEATS = 2, 5


class ExamplesLSTM(nn.Module):
    """pytorch/examples' RNNModel('LSTM'): seq-first, log-softmax output."""

    def __init__(self, vocab: int, d: int = 256, layers: int = 4, dropout: float = 0.5):
        super().__init__()
        self.drop, self.encoder = nn.Dropout(dropout), nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, d, layers, dropout=dropout)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, src):  # src [seq, batch]
        out, _ = self.rnn(self.drop(self.encoder(src)))
        return F.log_softmax(self.decoder(self.drop(out)).view(-1, self.decoder.out_features), dim=1)


class ExamplesTransformer(nn.Module):
    """pytorch/examples' TransformerModel: seq-first post-norm encoder, float causal mask, log-softmax output."""

    def __init__(self, vocab: int, d: int = 256, heads: int = 8, ff: int = 1024, layers: int = 4, dropout: float = 0.5):
        super().__init__()
        self.d, self.encoder_emb = d, nn.Embedding(vocab, d)
        self.positions, self.drop = PositionalEncoding(d, 5000), nn.Dropout(dropout)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, ff, dropout), layers, enable_nested_tensor=False)
        self.decoder = nn.Linear(d, vocab)

    def forward(self, src):  # src [seq, batch]
        n = src.shape[0]
        mask = torch.triu(torch.full((n, n), float("-inf"), device=src.device), diagonal=1)
        x = self.embed_positions(src)
        return F.log_softmax(self.decoder(self.encoder(x, mask=mask)), dim=-1).view(-1, self.decoder.out_features)

    def embed_positions(self, src):
        x = self.encoder_emb(src) * math.sqrt(self.d)  # [seq, batch, d]
        return self.drop(x + self.positions.pe[: src.shape[0], None])


def _steps(model, ids, *, ours: bool, train: bool):
    """One training step (forward, loss, backward, clip, Adam) or one evaluation forward, as a closure."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, targets = ids[:, :-1], ids[:, 1:]  # [batch, seq]
    if not ours:
        inputs, targets = inputs.T.contiguous(), targets.T.contiguous()  # seq-first

    def loss_of():
        if ours:
            logits, _ = model(inputs)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return F.nll_loss(model(inputs), targets.reshape(-1))

    def step():
        if train:
            model.train()
            loss = loss_of()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
        else:
            model.eval()
            with torch.no_grad():
                loss_of()

    return step


def _measure(step, tokens: int, device: str) -> tuple[float, float]:
    """(median tokens/s, peak memory MB)."""
    sync = synchronizer(device)
    for _ in range(WARMUP):  # untimed, and before the peak-memory counters start
        step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with RSSPeak() as rss:
        timings = time_calls(step, REPEATS, sync=sync)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss.growth_mb
    return tokens / timings.median, peak


def run_benchmark(profile: Profile) -> list[dict]:
    settings, device = profile.lm, profile.device
    rows = []
    for kind, reference in (("lstm", ExamplesLSTM), ("transformer", ExamplesTransformer)):
        torch.manual_seed(0)
        ids = torch.randint(0, VOCAB, (settings.batch_size, settings.seq_len + 1), device=device)
        models = {"ours": build_model(LMConfig(kind, VOCAB, context=settings.seq_len)).to(device),
                  "pytorch/examples": reference(VOCAB).to(device)}
        for phase in ("train", "eval"):
            measured = {name: _measure(_steps(m, ids, ours=name == "ours", train=phase == "train"),
                                       settings.batch_size * settings.seq_len, device) for name, m in models.items()}
            for name, (tps, mem) in measured.items():
                rows.append({
                    "benchmark": f"word LM {phase}", "model": kind, "variant": name,
                    "tokens_per_s": round(tps), "ours_vs_examples": round(measured["ours"][0] / measured["pytorch/examples"][0], 2),
                    "peak_mem_mb": round(mem, 1),
                    "notes": f"batch {settings.batch_size} x {settings.seq_len} tokens, vocab {VOCAB:,}; median of {REPEATS} "
                             f"after {WARMUP} warm-up; {torch.get_num_threads()} thread(s)",
                })
    return rows
