"""Landmark-guided local features, Eq. (2): v^j = g(F (.) A^j), and the global vector v_g = g(F).

Each of the 18 Gaussian heat-maps A^j (dferjax.keypoints.render_heatmaps) is broadcast over the
channels of the feature map F, multiplied element-wise and globally average pooled (g). The 18
products and poolings are one contraction over the spatial cells, ``einsum('nhwc,nhwk->nkc') / (h w)``,
so no (N, 18, h, w, C) tensor is ever built. Heat-maps given at another resolution than F are resized
to F's grid (linear, anti-aliased when shrinking) first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def match_resolution(heatmaps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize heat-maps (N, h', w', K) to (N, h, w, K) when their grid differs from F's."""
    if heatmaps.shape[1:3] == tuple(size):
        return heatmaps
    n, _, _, k = heatmaps.shape
    return jax.image.resize(heatmaps, (n, size[0], size[1], k), method="linear", antialias=True)


def landmark_pool(features: jax.Array, heatmaps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eq. (2). features F (N, h, w, C), heat-maps A (N, h', w', K) -> (V_l (N, K, C), v_g (N, C)).

    Accumulates in float32 whatever the compute dtype; returns the features' dtype.
    """
    h, w = features.shape[1:3]
    maps = match_resolution(heatmaps, (h, w)).astype(features.dtype)
    local = jnp.einsum("nhwc,nhwk->nkc", features, maps, preferred_element_type=jnp.float32) / (h * w)
    global_ = jnp.mean(features.astype(jnp.float32), axis=(1, 2))
    return local.astype(features.dtype), global_.astype(features.dtype)
