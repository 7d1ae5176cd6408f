"""Shared test fixtures: the tiny config and the location of the real test media."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from dferjax import models
from dferjax.config import base_config

# One XLA compilation cache for the whole test session, shared with the training subprocesses the fault tests
# start (through the environment): the suite compiles the same tiny programs again and again (every train.main,
# every subprocess), and JAX's persistent cache turns a repeat into a load. A fresh folder per session, removed
# at exit: a cached executable is what the same compilation gives, so no result changes. Every compilation is
# cached, the small ones too (each subprocess compiles dozens of initialisers and updates): the fault tests'
# sigterm/kill subset ran in 76.6-79.0 s against 81.4-82.6 s caching those over 0.2 s only.
_XLA_CACHE = tempfile.mkdtemp(prefix="dferjax-tests-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"
CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"


def tiny_config(name: str = "dfer", **section_overrides):
    """The demo's tiny setting (``models.apply_tiny``, each model's TINY) on 4 frames of 48x48 for speed
    (a 3x3 feature map at output stride 16); ``section_overrides`` go to ``config.model.<name>``, except
    ``num_classes`` and ``dtype``, which go to ``config.model``."""
    config = base_config(models.default_config())
    models.apply_tiny(config.model)
    config.model.name = name
    for section in models.MODELS:
        config.model[section].update(num_frames=4, image_size=48)
    config.data.num_segments = 2
    for key in ("num_classes", "dtype"):
        if key in section_overrides:
            config.model[key] = section_overrides.pop(key)
    config.model[name].update(section_overrides)
    return config


@pytest.fixture
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip(f"real test media not found at {TESTDATA} (it lives in the team's shared/ folder)")
    return TESTDATA


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory) -> tuple[Path, Path]:
    """(shards, run): a synthetic demo set (8 train / 7 test clips of 8 frames of 48 px) and the tiny model
    (tests/test_train.py's TINY) trained on it for one epoch (2 steps): real weights, not good ones. One for
    the session, read only: the modules that predict, export and evaluate with it write elsewhere."""
    from dferjax import train
    from dferjax.data import synthetic
    from dferjax.data.clips import PrepConfig

    from .test_train import tiny_args
    shards = tmp_path_factory.mktemp("demo_shards")
    synthetic.make_demo_set(shards, num_train=8, num_test=7, prep=PrepConfig(image_size=48, max_frames=8, min_frames=8),
                            progress=False)
    workdir = tmp_path_factory.mktemp("demo_run") / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.epochs=1")) == 0
    return shards, workdir
