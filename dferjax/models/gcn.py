"""Key-point optimisation with a GCN whose adjacency is weighted by a learned score, Eq. (3)-(4).

    W_a    = ReLU(V_l W_learn V_g^T)                       (4)   V_l (18, C), W_learn (C, C), V_g (1, C)
    V_GCN  = f[W_a (.) A  V_l + V_l] ; V_g                  (3)

W_a is one non-negative score per key-point (18 x 1): how well its local feature agrees with the
global one through W_learn; a key-point hidden by an occluder scores low. Multiplied element-wise
with the 18x18 adjacency A (keypoints.ADJACENCY), an 18 x 1 column broadcasts over A's columns, i.e.
it scales row i, the message node i gathers from its neighbours. Which way the paper means is open
(our reading, ``model.dfer.score_weighting``):

- ``rows`` (default, Eq. 3 as it broadcasts): (W_a (.) A)_ij = w_i A_ij: node i's incoming messages
  are scaled by its own score; a low-scoring (occluded) node takes less from its neighbours.
- ``columns``: (W_a (.) A)_ij = A_ij w_j: each neighbour j's message is scaled by j's score, i.e. a
  node's outgoing influence; an occluded key-point passes less of its feature on (the occlusion
  motivation of section 3.1.2). It is rows applied to A's transpose, transposed.

The residual adds each node's own feature. f is one
fully connected layer with ReLU shared by all 19 nodes (18 key-points and the global vector) and maps
C = 512 to 128 per node; the paper: "the final V^G is similar to the concatenation of V^l and V^g as
input but dimension is reduced from 512 to 128", and the fused token of section 3.2 is 4 x 128 = 512.

With ``graph=False`` (Table 9, models A and D) the message term and W_learn are absent and only f
runs, so every variant hands the fusion the same (19, 128) node set.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dferjax import keypoints

SCORE_WEIGHTINGS = ("rows", "columns")
"""Values of ``model.dfer.score_weighting``: which side of A the key-point scores W_a scale."""


def weighted_adjacency(scores: jax.Array, adjacency: jax.Array, weighting: str) -> jax.Array:
    """W_a (.) A of Eq. (3): scores (N, K), adjacency (K, K) -> (N, K, K), rows i scaled by w_i
    (``rows``) or columns j by w_j (``columns``)."""
    if weighting == "rows":
        return scores[:, :, None] * adjacency
    if weighting == "columns":
        return adjacency * scores[:, None, :]
    raise ValueError(f"model.dfer.score_weighting must be one of {SCORE_WEIGHTINGS}, got {weighting!r}")


class KeypointGCN(nnx.Module):
    """Eq. (3)-(4): (V_l (N, 18, C), V_g (N, C)) -> V_GCN (N, 19, node_dim), global node last."""

    def __init__(self, in_dim: int, node_dim: int, *, graph: bool = True, weighting: str = "rows",
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if weighting not in SCORE_WEIGHTINGS:
            raise ValueError(f"model.dfer.score_weighting must be one of {SCORE_WEIGHTINGS}, got {weighting!r}")
        self.graph = graph
        self.weighting = weighting
        self.dtype = dtype
        if graph:
            # Initialised to I / C: W_a starts as the mean of v^j * v_g over channels, the agreement of
            # each key-point with the whole face. V_l and V_g are non-negative (ReLU features pooled
            # with non-negative maps), so a zero-mean random W_learn gives all 18 scores one sign and,
            # about every other initialisation, a ReLU that is dead for every key-point and sample.
            self.w_learn = nnx.Param(jnp.eye(in_dim, dtype=jnp.float32) / in_dim)
        self.f = nnx.Linear(in_dim, node_dim, dtype=dtype, rngs=rngs)

    def scores(self, local: jax.Array, global_: jax.Array) -> jax.Array:
        """Eq. (4): W_a (N, 18), the ReLU of the bilinear form V_l W_learn V_g^T."""
        w = self.w_learn[...].astype(self.dtype)
        return nnx.relu(jnp.einsum("nkc,cd,nd->nk", local, w, global_, preferred_element_type=jnp.float32))

    def propagate(self, local: jax.Array, global_: jax.Array) -> jax.Array:
        """The argument of f in Eq. (3): [W_a (.) A V_l + V_l ; V_g] (N, 19, C) ([V_l ; V_g] without the graph)."""
        if self.graph:
            w_a = self.scores(local, global_)
            adj = jnp.asarray(keypoints.ADJACENCY)   # a constant of the face structure, not trained
            # (W_a (.) A) V_l: A weighted by the scores (rows or columns), then matrix product with V_l.
            message = jnp.einsum("nij,njc->nic", weighted_adjacency(w_a, adj, self.weighting), local,
                                 preferred_element_type=jnp.float32)
            local = (message + local.astype(jnp.float32)).astype(local.dtype)
        return jnp.concatenate([local, global_[:, None, :]], axis=1)

    def __call__(self, local: jax.Array, global_: jax.Array) -> jax.Array:
        return nnx.relu(self.f(self.propagate(local, global_)))

