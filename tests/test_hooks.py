"""The one hook mechanism: names, caching, patching, and the per-head split of z (GPT-2 and GQA LLaMA)."""

import pytest
import torch
from toy_models import toy_gpt2, toy_llama
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from repro import hooks
from repro.adapters import KVRecorder, PrefixKV, adapter_for

MODELS = {"gpt2": toy_gpt2, "llama-gqa": toy_llama}
IDS = torch.randint(0, 500, (2, 7), generator=torch.Generator().manual_seed(1))


def all_names(adapter):
    return [hooks.hook_name(site, layer) for layer in range(adapter.n_layers) for site in hooks.SITES]


def test_names_round_trip_and_reject_garbage():
    assert hooks.attn_z(9) == "blocks.9.attn.hook_z"
    assert hooks.parse_hook_name("blocks.10.hook_resid_pre") == (hooks.RESID_PRE, 10)
    with pytest.raises(ValueError, match="expected 'blocks.<layer>.<site>'"):
        hooks.parse_hook_name("blocks.1.attn.hook_nonsense")
    with (
        pytest.raises(ValueError, match="outside"),
        hooks.caching(adapter_for(toy_gpt2()), [hooks.resid_pre(3)]),
    ):
        pass


@pytest.mark.parametrize("family", MODELS)
def test_cache_shapes_and_whole_model_equals_pieces(family):
    model = MODELS[family]()
    adapter = adapter_for(model)
    with hooks.caching(adapter, all_names(adapter)) as whole:
        logits = model(IDS).logits
    with hooks.caching(adapter, all_names(adapter)) as pieces:
        assert torch.equal(adapter.forward(IDS), logits)
    for name in all_names(adapter):
        assert torch.allclose(whole[name], pieces[name], atol=1e-6), name
    assert whole[hooks.attn_z(0)].shape == (2, 7, adapter.n_heads, adapter.d_head)
    assert whole[hooks.mlp_out(1)].shape == (2, 7, adapter.d_model)
    # resid_post of a layer is resid_pre of the next, and resid_pre + attn_out + mlp_out
    assert torch.allclose(whole[hooks.resid_post(0)], whole[hooks.resid_pre(1)])
    total = whole[hooks.resid_pre(0)] + whole[hooks.attn_out(0)] + whole[hooks.mlp_out(0)]
    assert torch.allclose(whole[hooks.resid_post(0)], total, atol=1e-5)


@pytest.mark.parametrize("family", MODELS)
def test_patching_cached_values_back_changes_nothing_and_hooks_are_removed(family):
    model = MODELS[family]()
    adapter = adapter_for(model)
    with hooks.caching(adapter, all_names(adapter)) as cache:
        reference = adapter.forward(IDS)
    with hooks.patching(adapter, dict(cache)):
        assert torch.allclose(adapter.forward(IDS), reference, atol=1e-5)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", MODELS)
def test_patching_another_runs_residual_reproduces_that_run(family):
    model = MODELS[family]()
    adapter = adapter_for(model)
    other = IDS.flip(1)
    with hooks.caching(adapter, [hooks.resid_pre(1)]) as cache:
        reference = adapter.forward(other)
    with hooks.patching(adapter, {hooks.resid_pre(1): cache[hooks.resid_pre(1)]}):
        assert torch.allclose(adapter.forward(IDS), reference, atol=1e-5)
    unpatched = adapter.forward(IDS)
    with hooks.patching(adapter, {hooks.attn_z(0): lambda z: z * 0}):
        assert not torch.allclose(adapter.forward(IDS), unpatched, atol=1e-3)  # the patch acts...
    assert torch.equal(adapter.forward(IDS), unpatched)  # ...and only inside the with block


def test_hook_z_is_the_per_head_attention_output_for_gqa_llama():
    """Recompute attention by hand, with keys/values repeated for GQA (4 query heads on 2 KV heads), and
    check hook_z head by head; then check that head h's slice of z meets columns h*d_head.. of W_O."""
    model = toy_llama()
    adapter = adapter_for(model)
    assert adapter.n_kv_heads < adapter.n_heads
    block, attn = adapter.blocks[0], adapter.attention(0)
    with hooks.caching(adapter, [hooks.resid_pre(0), hooks.attn_z(0), hooks.attn_out(0)]) as cache:
        adapter.forward(IDS)
    x = block.input_layernorm(cache[hooks.resid_pre(0)])
    p, d = IDS.shape[1], adapter.d_head
    q = attn.q_proj(x).view(2, p, adapter.n_heads, d).transpose(1, 2)
    k = attn.k_proj(x).view(2, p, adapter.n_kv_heads, d).transpose(1, 2)
    v = attn.v_proj(x).view(2, p, adapter.n_kv_heads, d).transpose(1, 2)
    position_ids = torch.arange(p)[None]
    cos, sin = model.model.rotary_emb(x, position_ids)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    groups = adapter.n_heads // adapter.n_kv_heads
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    scores = q @ k.transpose(-1, -2) / d**0.5 + torch.full((p, p), float("-inf")).triu(1)
    z = (scores.softmax(-1) @ v).transpose(1, 2)  # [batch, pos, head, d_head]
    assert torch.allclose(cache[hooks.attn_z(0)], z, atol=1e-5)
    # attn_out = sum over heads of z_h @ W_O[:, h*d:(h+1)*d].T
    w_o = attn.o_proj.weight  # [d_model, head * d_head]
    per_head = [z[:, :, h] @ w_o[:, h * d : (h + 1) * d].T for h in range(adapter.n_heads)]
    assert torch.allclose(cache[hooks.attn_out(0)], sum(per_head), atol=1e-5)


def test_hook_z_split_matches_gpt2_c_proj_columns():
    model = toy_gpt2()
    adapter = adapter_for(model)
    d = adapter.d_head
    with hooks.caching(adapter, [hooks.attn_z(1), hooks.attn_out(1)]) as cache:
        adapter.forward(IDS)
    proj = adapter.attn_out_proj(1)  # Conv1D: y = x @ W + b, W [head * d_head, d_model]
    z = cache[hooks.attn_z(1)]
    per_head = [z[:, :, h] @ proj.weight[h * d : (h + 1) * d] for h in range(adapter.n_heads)]
    assert torch.allclose(cache[hooks.attn_out(1)], sum(per_head) + proj.bias, atol=1e-5)


def test_caching_without_detach_gives_gradients_with_respect_to_the_site():
    model = toy_gpt2()
    adapter = adapter_for(model)
    with torch.enable_grad(), hooks.caching(adapter, [hooks.attn_z(0)], detach=False) as cache:
        hidden = adapter.embed(IDS).requires_grad_(True)
        out = adapter.logits(adapter.run_blocks(hidden))[:, -1, 0].sum()
        (grad,) = torch.autograd.grad(out, [cache[hooks.attn_z(0)]])
    assert grad.shape == (2, 7, adapter.n_heads, adapter.d_head)
    assert grad[:, -1].abs().sum() > 0


@pytest.mark.parametrize("family", MODELS)
def test_suffix_runs_on_a_recorded_prefix_match_the_full_run(family):
    adapter = adapter_for(MODELS[family]())
    hidden = adapter.embed(IDS)
    recorder = KVRecorder()
    with hooks.caching(adapter, [hooks.resid_pre(1)]) as cache:
        full = adapter.run_blocks(
            hidden, kwargs={**adapter.block_kwargs(hidden), adapter.cache_kwarg: recorder}
        )
    for start in (0, 3, 6):
        suffix = cache[hooks.resid_pre(1)][:, start:].repeat(3, 1, 1)  # three stacked copies
        prefix = PrefixKV(recorder, start)
        out = adapter.run_blocks(suffix, 1, None, adapter.suffix_kwargs(suffix, prefix))
        assert torch.allclose(out, full[:, start:].repeat(3, 1, 1), atol=1e-5)
