"""Shared fixtures: offline mode, a throw-away artefact cache, and composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from ragft.record.cache import CACHE_ENV, cache_root  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
OmegaConf.register_new_resolver("ragft_root", lambda: str(ROOT), replace=True)


@pytest.fixture(scope="session", autouse=True)
def artefact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Adapters, embeddings and indexes go to a per-session folder; converted models (content-keyed,
    identical for everyone) are shared with the user's cache so the GGUF is dequantised once per machine."""
    shared_models = cache_root() / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("ragft-cache")
    (root / "models").symlink_to(shared_models, target_is_directory=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


def compose_config(*overrides: str, results: Path | None = None, with_hydra: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=with_hydra)
    if results is not None:
        with open_dict(cfg):
            cfg.paths.results = str(results)
    return cfg


@pytest.fixture
def smoke_cfg(tmp_path: Path):
    """A factory of smoke-sized configs (tiny models, few examples) writing into tmp_path."""

    def make(*overrides: str) -> DictConfig:
        return compose_config("+debug=smoke", "exp_name=test", *overrides, results=tmp_path / "results")

    return make
