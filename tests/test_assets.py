import shutil
from pathlib import Path

import pytest

from repro import assets
from repro.assets import DATA_ENV, AssetError


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """A data directory with a copy of the real tokenizer files."""
    real = assets.data_dir()
    if real is None:
        pytest.skip(f"${DATA_ENV} is not set")
    shutil.copytree(real / "gpt2-tokenizer", tmp_path / "gpt2-tokenizer")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    return tmp_path


def test_verified_file_is_returned(fake_data):
    vocab, merges = assets.gpt2_tokenizer_files()
    assert vocab == fake_data / "gpt2-tokenizer" / "vocab.json" and merges.is_file()


def test_corrupt_file_fails_its_checksum(fake_data):
    path = fake_data / "gpt2-tokenizer" / "merges.txt"
    path.write_text(path.read_text() + "x")
    with pytest.raises(AssetError, match=r"merges.txt is corrupt: sha256 [0-9a-f]{64} but expected 1ce16647"):
        assets.gpt2_tokenizer_files()


def test_missing_file_says_where_it_looked_and_what_it_expected(fake_data):
    with pytest.raises(AssetError) as err:
        assets.data_file("ptb/ptb.train.txt")
    message = str(err.value)
    assert str(fake_data / "ptb" / "ptb.train.txt") in message
    assert assets.DATA_FILES["ptb/ptb.train.txt"] in message
    assert DATA_ENV in message


def test_unset_data_dir_offline_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(AssetError, match=r"REPRO_DATA_DIR is not set and HF_HUB_OFFLINE forbids the hub"):
        assets._use_local("ptb")


def test_pinned_hashes_agree_with_the_data_folder_checksums():
    root = assets.data_dir()
    if root is None or not (root / "SHA256SUMS").is_file():
        pytest.skip("no data folder with SHA256SUMS")
    listed = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[str(Path(name))] = digest
    assert listed == assets.DATA_FILES


def test_real_data_loads_in_the_documented_form():
    if assets.data_dir() is None:
        pytest.skip(f"${DATA_ENV} is not set")
    ptb = assets.ptb()
    assert sum(len(line.split()) for line in ptb["train"]) == 887_521
    assert len(assets.hotpotqa()) == 103
    records, test_ids = assets.pubmedqa()
    assert len(records) == 1000 and len(test_ids) == 500
