"""ResNet18 backbone with a configurable output stride (the "adjusted ResNet18" of Eq. 1).

Huang et al. (2024), section 3.1.1, keep ResNet18 (He et al. 2016) but "change the stride of the last
two convolution layers to obtain a larger feature map". As in docs/DESIGN.md this is the last-stride
trick of the person re-identification work the GCN comes from: at output stride 16 layer4's
strided 3x3 convolution and its 1x1 shortcut run at stride 1, so a 112x112 face gives a 7x7 map.
Output stride 8 also sets layer3 to stride 1; 32 is the original network. The classifier (fc) is
not part of the backbone: the model's own heads replace it.

Layout is NHWC. Padding and layer names follow torchvision's ``resnet18`` (conv1, bn1, layer1..4,
blocks with conv1/bn1/conv2/bn2/downsample) so that a torchvision state dict maps onto it one to one.
Input frames are RGB in [0, 255] (uint8 or float); the ImageNet normalisation happens here, on the
accelerator, so the host sends uint8.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# torchvision's ResNet initialises convolutions with kaiming_normal_(mode="fan_out", relu).
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

STAGE_STRIDES = {32: (1, 2, 2, 2), 16: (1, 2, 2, 1), 8: (1, 2, 1, 1)}
"""Stride of the first block of layer1..layer4 for each supported output stride."""


def feature_map_size(image_size: int, output_stride: int) -> int:
    """Side of the backbone's feature map for a square input (every stride-2 layer rounds up)."""
    side = image_size
    for _ in range(2 + sum(s == 2 for s in STAGE_STRIDES[output_stride])):
        side = math.ceil(side / 2)
    return side


@jax.custom_vjp
def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """ResNet's stem max pool (3x3 window, stride 2, padding 1) on NHWC, as the maximum of 9 strided
    slices, with the gradient routed to the first maximum of each window in scan order (PyTorch's
    choice; equal to ``nnx.max_pool``'s gradient where a window's maximum is unique).

    Same values as ``nnx.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))``, but XLA:CPU runs a
    ``reduce_window`` max and, worse, its gradient (an argmax reduce-window over packed indices plus a
    scatter) as slow scalar loops: 15 ms of a 150 ms demo train step. Here both directions are
    elementwise selects and strided pads that XLA fuses.
    """
    return _max_pool_fwd(x)[0]


def _pool_slices(xp: jax.Array, out_h: int, out_w: int) -> list[tuple[int, int, jax.Array]]:
    return [(dy, dx, xp[:, dy:dy + 2 * (out_h - 1) + 1:2, dx:dx + 2 * (out_w - 1) + 1:2, :])
            for dy in range(3) for dx in range(3)]


def _max_pool_fwd(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    h, w = x.shape[1:3]
    out_h, out_w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    out = None
    for _, _, part in _pool_slices(xp, out_h, out_w):
        out = part if out is None else jnp.maximum(out, part)
    return out, (xp, out)


def _max_pool_bwd(residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array]:
    xp, out = residuals
    hp, wp = xp.shape[1:3]
    out_h, out_w = out.shape[1:3]
    grad = jnp.zeros(xp.shape, g.dtype)
    taken = jnp.zeros(out.shape, bool)
    for dy, dx, part in _pool_slices(xp, out_h, out_w):
        first = (part == out) & ~taken                  # the first window position holding the maximum
        taken = taken | first
        spread = ((0, 0, 0), (dy, hp - dy - 2 * (out_h - 1) - 1, 1), (dx, wp - dx - 2 * (out_w - 1) - 1, 1),
                  (0, 0, 0))                            # back to the padded input's grid, stride 2
        grad = grad + jax.lax.pad(jnp.where(first, g, jnp.zeros((), g.dtype)), jnp.zeros((), g.dtype), spread)
    return (grad[:, 1:-1, 1:-1, :],)


max_pool_3x3_s2.defvjp(_max_pool_fwd, _max_pool_bwd)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.Conv:
    """A bias-free convolution with PyTorch's symmetric padding (kernel // 2 on every side)."""
    pad = kernel // 2
    return nnx.Conv(in_ch, out_ch, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                    use_bias=False, kernel_init=_conv_init, dtype=dtype, rngs=rngs)


def batch_norm(ch: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5)."""
    return nnx.BatchNorm(ch, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
    """Two 3x3 convolutions with a residual connection (ResNet18's block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, dtype: Any, rngs: nnx.Rngs):
        self.conv1 = conv(in_ch, out_ch, 3, stride, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(out_ch, dtype=dtype, rngs=rngs)
        self.conv2 = conv(out_ch, out_ch, 3, 1, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(out_ch, dtype=dtype, rngs=rngs)
        if stride != 1 or in_ch != out_ch:
            # torchvision's downsample.0 (1x1 conv) and downsample.1 (BatchNorm).
            self.downsample = nnx.List([conv(in_ch, out_ch, 1, stride, dtype=dtype, rngs=rngs),
                                        batch_norm(out_ch, dtype=dtype, rngs=rngs)])
        else:
            self.downsample = None

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        y = self.bn2(self.conv2(y), use_running_average=not train)
        if self.downsample is not None:
            x = self.downsample[1](self.downsample[0](x), use_running_average=not train)
        return nnx.relu(y + x)


class ResNet18(nnx.Module):
    """ResNet18 trunk (stem + 4 stages of 2 BasicBlocks) returning the last feature map."""

    def __init__(self, *, widths: tuple[int, int, int, int] = (64, 128, 256, 512), output_stride: int = 16,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if output_stride not in STAGE_STRIDES:
            raise ValueError(f"model.<name>.output_stride must be one of {sorted(STAGE_STRIDES)}, got {output_stride}")
        self.dtype = dtype
        self.conv1 = nnx.Conv(3, widths[0], (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                              kernel_init=_conv_init, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(widths[0], dtype=dtype, rngs=rngs)
        in_ch = widths[0]
        stages = []
        for width, stride in zip(widths, STAGE_STRIDES[output_stride]):
            stages.append(nnx.List([BasicBlock(in_ch, width, stride, dtype=dtype, rngs=rngs),
                                    BasicBlock(width, width, 1, dtype=dtype, rngs=rngs)]))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = in_ch

    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """images (N, H, W, 3) RGB in [0, 255] -> feature map (N, H/os, W/os, C)."""
        x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
        x = x.astype(self.dtype)
        x = nnx.relu(self.bn1(self.conv1(x), use_running_average=not train))
        x = max_pool_3x3_s2(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, train)
        return x
