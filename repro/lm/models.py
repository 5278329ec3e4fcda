"""The three word-level language models of seed 004, side by side, behind one forward signature.

Like pytorch/examples' ``word_language_model/model.py``, but every model is called the same way,

    logits, state = model(ids, state)     # ids [batch, seq] -> logits [batch, seq, vocab]

so the trainer, the evaluator and the sampler never ask which kind they hold. ``state`` is what the
model carries from one window of text to the next: hidden vectors for the recurrent models, the most
recent token ids (at most ``context - 1``) for the Transformer, which has no recurrence and re-reads them.
``None`` starts from nothing. All three share the seed's sizes: embedding 256, 4 layers, dropout 0.5
between layers, a linear output layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

KINDS = ("rnn", "lstm", "transformer")
NAMES = {"rnn": "RNN", "lstm": "LSTM", "transformer": "Transformer"}


@dataclass(frozen=True)
class LMConfig:
    """Sizes of one model; stored in every checkpoint so a checkpoint can refuse the wrong model."""

    kind: str  # one of KINDS
    vocab_size: int
    d_model: int = 256  # embedding = hidden size (the seed: 256)
    n_layers: int = 4
    dropout: float = 0.5
    n_heads: int = 8  # Transformer only
    ff_mult: int = 4  # Transformer feed-forward width = ff_mult * d_model
    context: int = 256  # Transformer only: tokens it attends over (the seed's maximum sequence length)

    def as_dict(self) -> dict:
        return asdict(self)


class TanhRNN(nn.Module):
    """A multi-layer Elman RNN written out by hand: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    Parameters are named and shaped as in ``nn.RNN`` (``weight_ih_l0`` ...), so weights copy across and a
    unit test checks the two agree. The input projection of a whole layer is one matmul; only the
    [batch, hidden] x [hidden, hidden] step stays inside the time loop, which is what recurrence means.
    """

    def __init__(self, d_in: int, d_hidden: int, n_layers: int, dropout: float):
        super().__init__()
        self.d_hidden, self.n_layers = d_hidden, n_layers
        self.drop = nn.Dropout(dropout)  # between layers, as nn.RNN(dropout=...) does
        bound = 1 / math.sqrt(d_hidden)  # nn.RNN's initialisation
        for layer in range(n_layers):
            n_in = d_in if layer == 0 else d_hidden
            for name, shape in (("weight_ih", (d_hidden, n_in)), ("weight_hh", (d_hidden, d_hidden)),
                                ("bias_ih", (d_hidden,)), ("bias_hh", (d_hidden,))):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, seq, d_in], h0 [layer, batch, hidden] -> (out [batch, seq, hidden], h [layer, batch, hidden])."""
        batch, seq, _ = x.shape
        if h0 is None:
            h0 = x.new_zeros(self.n_layers, batch, self.d_hidden)
        finals = []
        for layer in range(self.n_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            if layer:
                x = self.drop(x)
            driven = x @ w_ih.T + (b_ih + b_hh)  # [batch, seq, hidden], all steps at once
            w_hh_t, h, steps = w_hh.T, h0[layer], []
            for t in range(seq):  # the recurrence, explicitly
                h = torch.tanh(driven[:, t] + h @ w_hh_t)
                steps.append(h)
            x = torch.stack(steps, dim=1)
            finals.append(h)
        return x, torch.stack(finals)


class RecurrentLM(nn.Module):
    """Embedding -> dropout -> 4-layer RNN (hand-written) or LSTM (``nn.LSTM``) -> dropout -> linear."""

    def __init__(self, config: LMConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        if c.kind == "rnn":
            self.rnn = TanhRNN(c.d_model, c.d_model, c.n_layers, c.dropout)
        else:
            self.rnn = nn.LSTM(c.d_model, c.d_model, c.n_layers, dropout=c.dropout, batch_first=True)
        self.head = nn.Linear(c.d_model, c.vocab_size)
        _init_ends(self.embed, self.head)

    def forward(self, ids: torch.Tensor, state=None):
        """ids [batch, seq] -> (logits [batch, seq, vocab], hidden state(s) [layer, batch, hidden])."""
        if self.config.kind == "lstm" and state is not None:
            state = tuple(state)
        out, state = self.rnn(self.drop(self.embed(ids)), state)
        return self.head(self.drop(out)), state


class PositionalEncoding(nn.Module):
    """The sinusoidal encoding of Vaswani et al. 2017: PE[pos, 2i] = sin(pos / 10000^(2i/d)), cos at 2i+1."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("pe", pe, persistent=False)  # [pos, d_model]; derived, not a weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]]


class TransformerLM(nn.Module):
    """Embedding * sqrt(d) + sinusoidal positions -> dropout -> 4 causal encoder layers (8 heads, feed-forward
    4x wider, dropout 0.5) -> linear. Its state is the last ``context - 1`` token ids: a next call attends over
    them and the new ids together, and returns logits for the new ids only."""

    def __init__(self, config: LMConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = PositionalEncoding(c.d_model, c.context)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff_mult * c.d_model, c.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(c.d_model, c.vocab_size)
        _init_ends(self.embed, self.head)

    def forward(self, ids: torch.Tensor, state=None):
        """ids [batch, seq] -> (logits [batch, seq, vocab], context ids [batch, <= context - 1])."""
        seq = ids.shape[1]
        if seq > self.config.context:
            raise ValueError(f"{seq} tokens exceed the Transformer's context of {self.config.context}.")
        past = state[:, -(self.config.context - seq):] if state is not None and self.config.context > seq else ids[:, :0]
        tokens = torch.cat([past, ids], dim=1)  # [batch, past + seq]
        n = tokens.shape[1]
        x = self.drop(self.positions(self.embed(tokens) * math.sqrt(self.config.d_model)))
        causal = nn.Transformer.generate_square_subsequent_mask(n, device=ids.device, dtype=x.dtype)
        x = self.encoder(x, mask=causal, is_causal=True)[:, -seq:]  # [batch, seq, d_model]
        return self.head(x), tokens[:, -(self.config.context - 1):]


def _init_ends(embed: nn.Embedding, head: nn.Linear) -> None:
    """Small uniform embedding and output weights, zero output bias (as pytorch/examples initialises them)."""
    nn.init.uniform_(embed.weight, -0.1, 0.1)
    nn.init.uniform_(head.weight, -0.1, 0.1)
    nn.init.zeros_(head.bias)


def unigram_output_bias(model: nn.Module, train_ids: torch.Tensor) -> None:
    """Set the output bias to the log add-one frequencies of ``train_ids``: the model starts at the unigram's
    perplexity and learns context from its first step ("init well", Karpathy 2019), where a one-pass budget would
    otherwise spend its first ~100 steps learning word frequencies."""
    counts = torch.bincount(train_ids.cpu(), minlength=model.config.vocab_size).double() + 1.0
    with torch.no_grad():
        model.head.bias.copy_((counts / counts.sum()).log().to(model.head.bias.dtype))


def build_model(config: LMConfig) -> nn.Module:
    if config.kind not in KINDS:
        raise ValueError(f"Unknown model kind {config.kind!r}; valid kinds: {', '.join(KINDS)}.")
    return TransformerLM(config) if config.kind == "transformer" else RecurrentLM(config)


def detach_state(state):
    """The state with its history cut (truncated back-propagation): tensors detached, structure kept."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
