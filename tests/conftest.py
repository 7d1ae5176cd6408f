"""Shared test fixtures: tiny model configs and the location of the real test media."""

from __future__ import annotations

from pathlib import Path

import pytest

from dferjax.config import base_config

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"


def tiny_config(**model_overrides):
    """The paper's architecture shrunk for speed: narrow widths, 4 frames of 48x48 (3x3 map at os 16)."""
    config = base_config()
    config.data.image_size = 48
    config.model.update(dict(num_frames=4, widths=(8, 8, 16, 16), node_dim=8, num_heads=2, head_dim=8,
                             mlp_dim=16, num_layers=2))
    config.model.update(model_overrides)
    return config


@pytest.fixture
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip(f"real test media not found at {TESTDATA} (it lives in the team's shared/ folder)")
    return TESTDATA
