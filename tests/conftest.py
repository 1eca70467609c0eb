"""Test-wide settings: no network, a fresh $CARL_HOME per test, one model cache per session."""

from __future__ import annotations

import os

import pytest

# Nothing reaches the internet from the tests.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("HF_TOKEN", None)
os.environ.pop("RUNPOD_API_KEY", None)
os.environ.pop("ANTHROPIC_API_KEY", None)
os.environ.pop("CARL_MCP_TOKEN", None)


@pytest.fixture(scope="session")
def models_cache(tmp_path_factory) -> str:
    """One models folder for the whole session, so carl-tiny is built once."""
    return str(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def carl_home(tmp_path, monkeypatch, models_cache):
    """Every test gets its own $CARL_HOME (job store, run dirs); models are shared."""
    home = tmp_path / "carl_home"
    monkeypatch.setenv("CARL_HOME", str(home))
    monkeypatch.setenv("CARL_MODELS_DIR", models_cache)
    return home


@pytest.fixture
def anyio_backend():
    return "asyncio"
