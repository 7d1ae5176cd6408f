"""Per-frame fusion of the 19 node vectors into one token (section 3.2, Table 10).

- ``structure`` (the paper's): the face is split into three regions (keypoints.REGIONS: upper left
  5 points, upper right 5, lower 6; the two nose-bridge points belong to none); each region's vectors
  are averaged and the three means are concatenated with the global vector:
  v_out = [mean(UL); mean(UR); mean(L); v_g], 4 x node_dim = 512 wide.
- ``mean``: the mean of the whole vector group (18 key-points and the global vector), node_dim wide.
- ``lstm``: an LSTM runs over the 19 vectors (key-points in keypoints.py order, global last) and its
  last output is the fusion result; its width is that of the structure fusion (4 x node_dim).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dferjax import keypoints
from dferjax.models.recurrent import LastStepLSTM

FUSION_KINDS = ("structure", "mean", "lstm")


def _region_matrix() -> np.ndarray:
    """(3, 18) averaging weights, one row per region of keypoints.REGIONS."""
    m = np.zeros((len(keypoints.REGIONS), keypoints.NUM_KEYPOINTS), np.float32)
    for r, members in enumerate(keypoints.REGIONS.values()):
        m[r, list(members)] = 1.0 / len(members)
    return m


REGION_MATRIX = _region_matrix()


class Fusion(nnx.Module):
    """(N, 19, node_dim) node set of one frame each -> (N, out_dim) token."""

    def __init__(self, kind: str, node_dim: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if kind not in FUSION_KINDS:
            raise ValueError(f"model.dfer.fusion must be one of {FUSION_KINDS}, got {kind!r}")
        self.kind = kind
        self.out_dim = node_dim if kind == "mean" else 4 * node_dim
        self.lstm = LastStepLSTM(node_dim, self.out_dim, dtype=dtype, rngs=rngs) if kind == "lstm" else None

    def __call__(self, nodes: jax.Array) -> jax.Array:
        if self.kind == "structure":
            regions = jnp.einsum("rk,nkd->nrd", jnp.asarray(REGION_MATRIX, nodes.dtype), nodes[:, :-1])
            tokens = jnp.concatenate([regions, nodes[:, -1:]], axis=1)      # [UL, UR, L, global]
            return tokens.reshape(nodes.shape[0], -1)
        if self.kind == "mean":
            return jnp.mean(nodes, axis=1)
        return self.lstm(nodes)
