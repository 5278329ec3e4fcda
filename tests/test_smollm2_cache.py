"""The de-quantised SmolLM2 cache is trusted only while it matches the manifest written with it.

The ~30-second de-quantisation is replaced by a toy LLaMA (``fake_dequantise``), so these tests check the
cache's bookkeeping, not transformers' GGUF reader (the claims load the real cache).

| the cache folder ...                          | load_model("smollm2-135m") ...                              |
|-----------------------------------------------|-------------------------------------------------------------|
| is absent                                     | builds it (manifest written last), then loads it            |
| is intact                                     | loads it, no rebuild; sha256 = the safetensors actually read |
| has an edited or unreadable file              | says so on stderr and rebuilds it from the verified GGUF    |
| has an extra file, or no manifest             | rebuilds it (nothing unlisted is ever read)                 |
| cannot be written (and must be built)         | one-line AssetError before any de-quantisation              |
"""

import pytest
from toy_models import toy_llama

from repro import models, smollm2
from repro.assets import CACHE_ENV, AssetError, sha256_of


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, a stand-in GGUF and a counting, seconds-fast de-quantiser."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / smollm2.SMOLLM2_FILE
    gguf.write_bytes(b"not read: the de-quantiser is replaced")
    monkeypatch.setattr(smollm2, "smollm2_gguf", lambda: gguf)
    builds = []

    def fake_dequantise(path):
        builds.append(path)
        return toy_llama(), models.gpt2_tokenizer()

    monkeypatch.setattr(smollm2, "_dequantised_smollm2", fake_dequantise)
    return builds


def load():
    return smollm2.load_smollm2()  # not load_model: that one is memoised per process


def test_first_load_builds_the_cache_with_its_manifest_written_last(cache):
    model, tokenizer, source, sha = load()
    folder = smollm2.smollm2_cache()
    manifest = smollm2.read_manifest(folder)
    assert len(cache) == 1 and {"model.safetensors", "config.json"} <= manifest.keys()
    assert manifest == {name: sha256_of(folder / name) for name in manifest}
    assert {p.name for p in folder.iterdir()} == {*manifest, smollm2.CACHE_MANIFEST}
    assert sha == sha256_of(folder / "model.safetensors")  # the weights actually loaded, not the GGUF's hash
    assert smollm2.SMOLLM2_SHA256 in source and model.config.num_hidden_layers == 2
    assert not list(folder.parent.glob(".*"))  # no staging folder left behind


def test_an_intact_cache_is_loaded_without_rebuilding(cache):
    load()
    load()
    assert len(cache) == 1


def test_an_edited_cache_file_is_detected_and_rebuilt(cache, capsys):
    load()
    weights = smollm2.smollm2_cache() / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last float: a silently different model
    weights.write_bytes(bytes(data))
    *_, sha = load()
    assert len(cache) == 2 and "has a changed model.safetensors" in capsys.readouterr().err
    assert sha == sha256_of(weights) and smollm2.cache_problem(smollm2.smollm2_cache()) is None


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda f: (f / "added_tokens.json").write_text('{" Mary": 0}'), "holds other files than it was built with"),
        (lambda f: (f / smollm2.CACHE_MANIFEST).unlink(), "has no readable SHA256SUMS"),
        (lambda f: (f / "config.json").unlink(), "missing ['config.json']"),
        (lambda f: ((f / "config.json").unlink(), (f / "config.json").mkdir()), "has an unreadable config.json"),
    ],
)
def test_extra_missing_or_unreadable_files_make_the_cache_untrusted(cache, damage, problem):
    load()
    folder = smollm2.smollm2_cache()
    damage(folder)
    assert problem in smollm2.cache_problem(folder)
    load()
    assert len(cache) == 2 and smollm2.cache_problem(folder) is None


def test_an_unwritable_cache_folder_fails_before_de_quantising(cache, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))  # a folder inside a file: never writable, even as root
    with pytest.raises(AssetError, match=r"The model cache folder \(\$REPRO_CACHE_DIR\) .* is not writable .* Set REPRO_CACHE_DIR"):
        load()
    assert cache == []
