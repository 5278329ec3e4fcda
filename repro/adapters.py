"""One small interface over Hugging Face causal LMs of the GPT-2 and LLaMA families.

Experiments use only this interface, never model-specific attribute paths, so a claim written for GPT-2
runs unchanged on a LLaMA-family model. ``embed`` -> ``run_blocks`` -> ``logits`` reproduces the model's
own forward pass (a unit test checks it), which lets experiments start or stop anywhere in the stack.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

GPT2_FAMILY = {"gpt2"}
LLAMA_FAMILY = {"llama", "mistral", "qwen2"}


@dataclass(frozen=True)
class ModelAdapter:
    model: nn.Module
    family: str  # "gpt2" | "llama"
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_vocab: int

    # ---- modules ----
    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.transformer.h if self.family == "gpt2" else self.model.model.layers

    def attention(self, layer: int) -> nn.Module:
        block = self.blocks[layer]
        return block.attn if self.family == "gpt2" else block.self_attn

    def attn_out_proj(self, layer: int) -> nn.Module:
        """The module whose *input* is the concatenated per-head attention output [batch, pos, n_heads*d_head]."""
        return self.attention(layer).c_proj if self.family == "gpt2" else self.attention(layer).o_proj

    def attn_norm(self, layer: int) -> nn.Module:
        """The normalisation whose output the attention's q/k/v projections read (LayerNorm or RMSNorm)."""
        block = self.blocks[layer]
        return block.ln_1 if self.family == "gpt2" else block.input_layernorm

    def qkv_weights(self, layer: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """``{"q"|"k"|"v": (weight [out, d_model], bias [out] or None)}``, out = heads * d_head, head-major.
        GPT-2's fused Conv1D stores [d_model, 3 * d_model] (input-major); LLaMA's Linear [out, in]."""
        attn = self.attention(layer)
        if self.family == "gpt2":
            weight, bias = attn.c_attn.weight.T, attn.c_attn.bias  # [3 * d_model, d_model]
            return dict(zip("qkv", zip(weight.split(self.d_model), bias.split(self.d_model))))
        return {name: (proj.weight, proj.bias) for name, proj in zip("qkv", (attn.q_proj, attn.k_proj, attn.v_proj))}

    @property
    def rotary(self) -> bool:
        """Queries and keys are rotated (RoPE, rotate-half pairing of channels c and c + d_head/2)."""
        return self.family == "llama"

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks[layer].mlp

    def mlp_down_proj(self, layer: int) -> nn.Module:
        return self.mlp(layer).c_proj if self.family == "gpt2" else self.mlp(layer).down_proj

    # ---- the MLP down-projection's weight, one orientation for every family ----
    def _down_proj_is_conv1d(self, layer: int) -> bool:
        """GPT-2 stores its projections as ``Conv1D`` with the weight [d_in, d_out] (``x @ W``), LLaMA as
        ``nn.Linear`` with [d_out, d_in] (``x @ W.T``). Asked of the module's type, never read off the
        shape (a square MLP would make the shape ambiguous)."""
        from transformers.pytorch_utils import Conv1D

        module = self.mlp_down_proj(layer)
        if isinstance(module, Conv1D):
            return True
        if isinstance(module, nn.Linear):
            return False
        raise TypeError(f"Layer {layer}'s MLP down-projection is a {type(module).__name__}, not Conv1D or Linear.")

    def down_proj_weight(self, layer: int) -> torch.Tensor:
        """The down-projection weight as [d_out = d_model, d_in = d_mlp] (out = W @ in), whatever the
        storage: a view of the parameter (GPT-2: its transpose), so reads and writes see the real weight."""
        return self.as_down_proj_matrix(layer, self.mlp_down_proj(layer).weight)

    def as_down_proj_matrix(self, layer: int, stored: torch.Tensor) -> torch.Tensor:
        """A tensor laid out like the stored down-projection weight (the weight, its gradient) as
        [d_out, d_in]."""
        return stored.T if self._down_proj_is_conv1d(layer) else stored

    @torch.no_grad()
    def set_down_proj_weight(self, layer: int, weight: torch.Tensor) -> None:
        """Write ``weight`` [d_out, d_in] into the down-projection in its storage orientation (exact copy)."""
        target = self.down_proj_weight(layer)
        if weight.shape != target.shape:
            raise ValueError(f"Layer {layer}: down-projection weight must be {tuple(target.shape)}, got {tuple(weight.shape)}.")
        target.copy_(weight)  # ``target`` is a view of the parameter, so this writes through the transpose

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.transformer.wte if self.family == "gpt2" else self.model.model.embed_tokens

    @property
    def position_embedding(self) -> nn.Embedding | None:
        """Learned position embedding (GPT-2); None for rotary models."""
        return self.model.transformer.wpe if self.family == "gpt2" else None

    @property
    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f if self.family == "gpt2" else self.model.model.norm

    @property
    def unembed(self) -> nn.Linear:
        return self.model.lm_head

    @property
    def device(self) -> torch.device:
        """Where the weights live: inputs built on the CPU (token ids, answer ids) must move here."""
        return self.unembed.weight.device

    @cached_property
    def cache_kwarg(self) -> str:
        """The keyword blocks take a key/value cache under: ``cache`` from transformers 5.24 on,
        ``past_key_values`` before (deprecated since, removed in 5.40)."""
        params = inspect.signature(self.blocks[0].forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    # ---- forward in pieces ----
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Residual stream before block 0: [batch, pos] -> [batch, pos, d_model]."""
        hidden = self.token_embedding(input_ids)
        if self.position_embedding is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            hidden = hidden + self.position_embedding(positions)
        return hidden

    def block_kwargs(self, hidden: torch.Tensor) -> dict:
        """Keyword arguments every block needs for a causal pass over ``hidden`` [batch, pos, d_model]."""
        n_pos = hidden.shape[1]
        # An explicit additive causal mask: correct under eager and SDPA attention alike.
        mask = torch.full((n_pos, n_pos), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        kwargs = {"attention_mask": mask.triu(1)[None, None]}
        if self.family == "llama":
            position_ids = torch.arange(n_pos, device=hidden.device)[None]
            kwargs["position_ids"] = position_ids
            kwargs["position_embeddings"] = self.model.model.rotary_emb(hidden, position_ids)
        return kwargs

    def run_blocks(self, hidden: torch.Tensor, start: int = 0, stop: int | None = None, kwargs: dict | None = None):
        """Run blocks ``start`` .. ``stop``-1 on the residual stream."""
        kwargs = self.block_kwargs(hidden) if kwargs is None else kwargs
        for block in self.blocks[start:stop]:
            out = block(hidden, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def suffix_kwargs(self, hidden: torch.Tensor, prefix: PrefixKV) -> dict:
        """Keyword arguments to run ``hidden`` [batch, n_new, d_model] as the positions right after a
        prefix whose keys/values ``prefix`` holds: the new positions attend to the whole prefix and
        causally among themselves, at their true positions (rotary models need them)."""
        n_new, n_prefix = hidden.shape[1], prefix.length
        mask = torch.full((n_new, n_prefix + n_new), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        kwargs = {"attention_mask": mask.triu(n_prefix + 1)[None, None], self.cache_kwarg: prefix}
        if self.family == "llama":
            position_ids = torch.arange(n_prefix, n_prefix + n_new, device=hidden.device)[None]
            kwargs["position_ids"] = position_ids
            kwargs["position_embeddings"] = self.model.model.rotary_emb(hidden, position_ids)
        return kwargs

    def ragged_suffix_kwargs(self, hidden: torch.Tensor, prefix: RaggedPrefixKV) -> dict:
        """Keyword arguments to run ``hidden`` [batch, n_new, d_model] as the positions right after
        prefixes of different lengths per row (``prefix.lengths`` [batch]): row r's new positions sit at
        lengths[r], lengths[r] + 1, ...; they attend to their own row's prefix and causally among themselves."""
        batch, n_new = hidden.shape[:2]
        lengths = prefix.lengths.to(hidden.device)
        own_prefix = torch.arange(prefix.width, device=hidden.device)[None, None] < lengths[:, None, None]  # [b, 1, w]
        causal = torch.ones(n_new, n_new, dtype=torch.bool, device=hidden.device).tril()[None]  # [1, n, n]
        allowed = torch.cat([own_prefix.expand(batch, n_new, -1), causal.expand(batch, -1, -1)], dim=-1)
        mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
        mask = mask.masked_fill(~allowed, torch.finfo(hidden.dtype).min)[:, None]  # [b, 1, n_new, w + n_new]
        kwargs = {"attention_mask": mask, self.cache_kwarg: prefix}
        if self.family == "llama":
            position_ids = lengths[:, None] + torch.arange(n_new, device=hidden.device)[None]  # [b, n_new]
            kwargs["position_ids"] = position_ids
            kwargs["position_embeddings"] = self.model.model.rotary_emb(hidden, position_ids)
        return kwargs

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and unembedding: [..., d_model] -> [..., d_vocab]."""
        return self.unembed(self.final_norm(hidden))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits via the pieces above; equals ``model(input_ids).logits``."""
        return self.logits(self.run_blocks(self.embed(input_ids)))


class KVRecorder:
    """Passed as the key/value cache to blocks, records each attention layer's keys and values (after
    rotary embedding; before GQA repetition) and hands them back unchanged, so the run is unaffected."""

    def __init__(self):
        self.keys: dict[int, torch.Tensor] = {}  # layer -> [batch, kv_head, pos, d_head]
        self.values: dict[int, torch.Tensor] = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx], self.values[layer_idx] = key_states.detach(), value_states.detach()
        return key_states, value_states


class PrefixKV:
    """A read-only prefix of recorded keys/values, passed as the key/value cache: each attention layer
    sees the prefix's keys/values followed by the new positions' own. Nothing is stored between calls, so
    one PrefixKV serves any number of runs. When the new positions' batch is a multiple of the recorded
    batch (runs that stack several variants of the same prompts, batch-major: [v0 b0, v0 b1, ..., v1 b0,
    ...]), the prefix is tiled to match."""

    def __init__(self, recorded: KVRecorder, length: int):
        self.recorded, self.length = recorded, length

    def _prefix(self, recorded: torch.Tensor, batch: int) -> torch.Tensor:
        prefix = recorded[:, :, : self.length]  # [batch, kv_head, prefix, d_head]
        if batch % prefix.shape[0]:
            raise ValueError(f"PrefixKV: a batch of {batch} is not a multiple of the recorded batch {prefix.shape[0]}.")
        return prefix.repeat(batch // prefix.shape[0], 1, 1, 1) if batch != prefix.shape[0] else prefix

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        # Sliced and tiled per call, for the layers actually run: a run from layer l never touches the rest.
        batch = key_states.shape[0]
        keys = torch.cat([self._prefix(self.recorded.keys[layer_idx], batch), key_states], dim=-2)
        values = torch.cat([self._prefix(self.recorded.values[layer_idx], batch), value_states], dim=-2)
        return keys, values


class RaggedPrefixKV:
    """Recorded keys/values as per-row prefixes of different lengths (``lengths`` [batch]): each attention
    layer sees the first ``width`` = max(lengths) recorded positions of its row, followed by the new
    positions' own; ``ModelAdapter.ragged_suffix_kwargs`` masks each row's positions past its own length.
    Read-only, so one serves any number of runs; ``select`` keeps some rows (e.g. those still optimised)."""

    def __init__(self, keys: dict[int, torch.Tensor], values: dict[int, torch.Tensor], lengths: torch.Tensor):
        self.lengths = lengths
        self.width = int(lengths.max())
        self.keys = {layer: k[:, :, : self.width] for layer, k in keys.items()}  # layer -> [batch, kv_head, width, d_head]
        self.values = {layer: v[:, :, : self.width] for layer, v in values.items()}

    @classmethod
    def from_recorder(cls, recorded: KVRecorder, lengths: torch.Tensor) -> RaggedPrefixKV:
        return cls(recorded.keys, recorded.values, lengths)

    def select(self, rows: torch.Tensor) -> RaggedPrefixKV:
        at = {la: rows.to(k.device) for la, k in self.keys.items()}
        return RaggedPrefixKV({la: k[at[la]] for la, k in self.keys.items()},
                              {la: v[at[la]] for la, v in self.values.items()}, self.lengths[rows.to(self.lengths.device)])

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys = torch.cat([self.keys[layer_idx].to(key_states.dtype), key_states], dim=-2)
        values = torch.cat([self.values[layer_idx].to(value_states.dtype), value_states], dim=-2)
        return keys, values


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The adapter for a Hugging Face causal LM (or DistilBERT's masked LM); a clear error for unsupported
    architectures."""
    cfg = model.config
    if cfg.model_type == "distilbert":
        return EncoderAdapter(model, "distilbert", cfg.n_layers, cfg.n_heads, cfg.n_heads, cfg.dim // cfg.n_heads,
                              cfg.dim, cfg.vocab_size)
    family = "gpt2" if cfg.model_type in GPT2_FAMILY else "llama" if cfg.model_type in LLAMA_FAMILY else None
    if family is None:
        raise ValueError(
            f"Unsupported model_type {cfg.model_type!r}: adapters exist for {sorted(GPT2_FAMILY | LLAMA_FAMILY)}."
        )
    n_heads = cfg.num_attention_heads
    return ModelAdapter(
        model=model,
        family=family,
        n_layers=cfg.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
        d_head=getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads,
        d_model=cfg.hidden_size,
        d_vocab=cfg.vocab_size,
    )


@dataclass(frozen=True)
class EncoderAdapter(ModelAdapter):
    """DistilBERT's masked LM (``DistilBertForMaskedLM``): bidirectional attention, post-LayerNorm blocks.
    The same interface, for claim 4's bidirectional comparison; its attention reads the previous block's
    output LayerNorm (the embeddings' LayerNorm in block 0), which is what ``attn_norm`` returns."""

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.distilbert.transformer.layer

    def attention(self, layer: int) -> nn.Module:
        return self.blocks[layer].attention

    def attn_out_proj(self, layer: int) -> nn.Module:
        return self.attention(layer).out_lin

    def attn_norm(self, layer: int) -> nn.Module:
        return self.model.distilbert.embeddings.LayerNorm if layer == 0 else self.blocks[layer - 1].output_layer_norm

    def qkv_weights(self, layer: int) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        attn = self.attention(layer)
        return {name: (proj.weight, proj.bias) for name, proj in zip("qkv", (attn.q_lin, attn.k_lin, attn.v_lin))}

    @property
    def rotary(self) -> bool:
        return False

    def mlp(self, layer: int) -> nn.Module:
        return self.blocks[layer].ffn

    def mlp_down_proj(self, layer: int) -> nn.Module:
        return self.mlp(layer).lin2

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.distilbert.embeddings.word_embeddings

    @property
    def position_embedding(self) -> nn.Embedding | None:
        return self.model.distilbert.embeddings.position_embeddings

    @property
    def final_norm(self) -> nn.Module:
        return self.model.vocab_layer_norm

    @property
    def unembed(self) -> nn.Linear:
        return self.model.vocab_projector

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.distilbert.embeddings(input_ids)

    def block_kwargs(self, hidden: torch.Tensor) -> dict:
        return {"attention_mask": None}  # every position sees every other (no padding)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(hidden))))
