import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Unit tests never reach a hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
