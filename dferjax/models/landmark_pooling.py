"""Landmark-guided local features, Eq. (2): v^j = g(F (.) A^j), and the global vector v_g = g(F).

Each of the 18 Gaussian heat-maps A^j (dferjax.keypoints.render_heatmaps) is broadcast over the
channels of the feature map F, multiplied element-wise and globally average pooled (g). The 18
products and poolings are one contraction over the spatial cells, ``einsum('nhwc,nhwk->nkc') / (h w)``,
so no (N, 18, h, w, C) tensor is ever built. Heat-maps given at another resolution than F are resized
to F's grid (linear, anti-aliased when shrinking) first.

The paper does not say how the maps are scaled (our reading, ``model.dfer.heatmap_norm``); g stays the
average pooling of Eq. (2) in every case, only A^j changes, on F's grid:

- ``peak``: as rendered, 1 at a key-point on a cell centre. v^j = (sum A^j / (h w)) x the A^j-weighted
  mean of F: about 2 pi sigma^2 / (h w) of it (0.13 at 7x7 and sigma = 1 cell, 0.03 at 14x14), a factor
  that changes with the resolution and sigma and shrinks for a key-point near the border.
- ``sum``: each map sums to 1 over the grid (a distribution, the "Gauss distribution" of section
  3.1.1): v^j = the A^j-weighted mean of F / (h w).
- ``mean``: each map has mean 1 over the grid: v^j = the A^j-weighted mean of F, on the scale of
  v_g (the unweighted mean) at every resolution and sigma.

A map that is zero everywhere (a key-point without a fit) stays zero in every case.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HEATMAP_NORMS = ("peak", "sum", "mean")
"""Values of ``model.dfer.heatmap_norm``: how each heat-map is scaled before Eq. (2)."""


def match_resolution(heatmaps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize heat-maps (N, h', w', K) to (N, h, w, K) when their grid differs from F's."""
    if heatmaps.shape[1:3] == tuple(size):
        return heatmaps
    n, _, _, k = heatmaps.shape
    return jax.image.resize(heatmaps, (n, size[0], size[1], k), method="linear", antialias=True)


def normalise_heatmaps(heatmaps: jax.Array, norm: str) -> jax.Array:
    """Heat-maps (N, h, w, K) scaled per map as ``norm`` says (module docstring); ``peak`` returns them as given.

    Raises:
      ValueError: ``norm`` is not one of HEATMAP_NORMS (named as the config key).
    """
    if norm not in HEATMAP_NORMS:
        raise ValueError(f"model.dfer.heatmap_norm must be one of {HEATMAP_NORMS}, got {norm!r}")
    if norm == "peak":
        return heatmaps
    maps = heatmaps.astype(jnp.float32)
    total = jnp.sum(maps, axis=(1, 2), keepdims=True)
    target = 1.0 if norm == "sum" else float(maps.shape[1] * maps.shape[2])
    # An all-zero map (total 0) stays zero: 0 / tiny = 0.
    return (maps / jnp.maximum(total, jnp.finfo(jnp.float32).tiny) * target).astype(heatmaps.dtype)


def landmark_pool(features: jax.Array, heatmaps: jax.Array, norm: str = "peak") -> tuple[jax.Array, jax.Array]:
    """Eq. (2). features F (N, h, w, C), heat-maps A (N, h', w', K) -> (V_l (N, K, C), v_g (N, C)).

    ``norm``: how each map is scaled on F's grid first (``normalise_heatmaps``). Accumulates in float32
    whatever the compute dtype; returns the features' dtype.
    """
    h, w = features.shape[1:3]
    maps = normalise_heatmaps(match_resolution(heatmaps, (h, w)), norm).astype(features.dtype)
    local = jnp.einsum("nhwc,nhwk->nkc", features, maps, preferred_element_type=jnp.float32) / (h * w)
    global_ = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
    return local.astype(features.dtype), global_.astype(features.dtype)
