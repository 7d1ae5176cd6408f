"""ResNet18 backbone with a configurable output stride (the "adjusted ResNet18" of Eq. 1).

Huang et al. (2024), section 3.1.1, keep ResNet18 (He et al. 2016) but "change the stride of the last
two convolution layers to obtain a larger feature map". As in DESIGN.md this is the last-stride
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
            raise ValueError(f"model.output_stride must be one of {sorted(STAGE_STRIDES)}, got {output_stride}")
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
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x, train)
        return x
