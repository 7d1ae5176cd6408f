"""Triplet attention (Misra et al., WACV 2021), the Tri(.) of Eq. (1): F_i = Tri(Resnet(x_i)).

Three branches each capture the interaction of two of the three dimensions (C, H, W) of a feature map:
the branch "rotates" the tensor so that the third dimension is pooled away by Z-pool (max and mean
concatenated, 2 channels), a 7x7 convolution and batch norm map the two pooled planes to one, and a
sigmoid gives the attention weights over the remaining two dimensions. The three re-weighted maps are
averaged. In NHWC the rotations need no transposes: Z-pool simply reduces over H, W or C.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def z_pool(x: jax.Array, axis: int) -> jax.Array:
    """Max and mean over ``axis``, stacked as a trailing axis of 2 channels (Z-pool).

    The max is taken as the element at the argmax, so its gradient goes to that one element, as
    PyTorch's ``torch.max(x, dim)`` does. ``jnp.max`` would give the same value, but its gradient
    (equality of the operand with the result) came out wrong under ``jax.jit`` on XLA:CPU (jax 0.10.2):
    26% off the eager gradient of the backbone, even in float64 (tests/test_models.py).
    """
    index = jnp.argmax(x, axis=axis, keepdims=True)
    peak = jnp.take_along_axis(x, index, axis=axis).squeeze(axis)
    return jnp.stack([peak, jnp.mean(x, axis=axis)], axis=-1)


class AttentionGate(nnx.Module):
    """Z-pool -> 7x7 conv (2 -> 1, no bias) -> BatchNorm -> sigmoid, over a 2-D plane."""

    def __init__(self, kernel_size: int = 7, *, dtype: Any, rngs: nnx.Rngs):
        pad = kernel_size // 2
        self.conv = nnx.Conv(2, 1, (kernel_size, kernel_size), padding=((pad, pad), (pad, pad)),
                             use_bias=False, dtype=dtype, rngs=rngs)
        # The reference implementation uses BatchNorm2d(momentum=0.01), i.e. 0.99 here.
        self.bn = nnx.BatchNorm(1, momentum=0.99, epsilon=1e-5, dtype=dtype, rngs=rngs)

    def __call__(self, plane: jax.Array, train: bool) -> jax.Array:
        """plane (N, A, B, 2) -> weights (N, A, B) in (0, 1)."""
        y = self.bn(self.conv(plane), use_running_average=not train)
        return jax.nn.sigmoid(y)[..., 0]


class TripletAttention(nnx.Module):
    """Eq. (1)'s Tri: the average of the C-W, C-H and H-W attention branches. Shape preserving."""

    def __init__(self, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.cw = AttentionGate(dtype=dtype, rngs=rngs)   # pools over H, attends over (W, C)
        self.hc = AttentionGate(dtype=dtype, rngs=rngs)   # pools over W, attends over (H, C)
        self.hw = AttentionGate(dtype=dtype, rngs=rngs)   # pools over C, attends over (H, W)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """x (N, H, W, C) -> (N, H, W, C)."""
        s_cw = self.cw(z_pool(x, 1), train)[:, None, :, :]     # (N, 1, W, C)
        s_hc = self.hc(z_pool(x, 2), train)[:, :, None, :]     # (N, H, 1, C)
        s_hw = self.hw(z_pool(x, 3), train)[:, :, :, None]     # (N, H, W, 1)
        return x * ((s_cw + s_hc + s_hw) / 3.0).astype(x.dtype)
