"""Toy GPT-2 and LLaMA (grouped-query attention) models for unit tests: seeded, built in milliseconds.

Each test file picks the sizes it needs as config overrides, so there is one place that builds them."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from repro.adapters import adapter_for
from repro.models import LoadedModel

GPT2_DEFAULTS = dict(n_layer=3, n_head=4, n_embd=64, vocab_size=500, n_positions=64)
LLAMA_DEFAULTS = dict(
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
    hidden_size=64,
    intermediate_size=128,
    vocab_size=500,
    max_position_embeddings=64,
)


def toy_gpt2(**config) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**GPT2_DEFAULTS | config)).eval().requires_grad_(False)


def toy_llama(**config) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**LLAMA_DEFAULTS | config)).eval().requires_grad_(False)


def as_loaded(model: torch.nn.Module, key: str, tokenizer=None) -> LoadedModel:
    """Wrap a toy model the way `repro.models.load_model` wraps a registered one."""
    return LoadedModel(key, model, tokenizer, adapter_for(model), "test: random init", None)
