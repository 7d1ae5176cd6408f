"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"), as torchvision's ``convnext_{tiny,small,base}``.

* Stem: a 4x4 convolution at stride 4 and a LayerNorm over channels.
* Four stages of blocks, a LayerNorm and a 2x2 convolution at stride 2 between them (the downsampling).
* A block (section 2.4 of the paper, torchvision's ``CNBlock``): 7x7 depthwise convolution ->
  LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, C), times a per-channel layer scale (initialised at
  ``layer_scale``, 1e-6), through stochastic depth (Huang et al. 2016), plus the block's input.
* Stochastic depth: block i of n (counted over all stages) is dropped with probability
  ``drop_path * i / (n - 1)``, per sample, the kept ones scaled by 1 / (1 - p) (torchvision's "row" mode).
* :meth:`ConvNeXt.pool`: the global average pool and the LayerNorm that torchvision's classifier starts with
  (``classifier.0``); the classifier's Linear is not part of the backbone.

Sizes (:data:`SIZES`): tiny (3, 3, 9, 3 blocks; widths 96-768), small (3, 3, 27, 3; 96-768), base (3, 3,
27, 3; 128-1024). Every LayerNorm has epsilon 1e-6 and GELU is the exact (erf) one, as PyTorch's; convolution
and Linear weights start from a normal of std 0.02 (truncated at 2 std), biases at zero, as torchvision's.

Layout is NHWC. Inputs are RGB in [0, 255] (uint8 or float), ImageNet-normalised here as in
``models.resnet``. A torchvision state dict maps onto the parameters one to one
(:func:`torchvision_key`; loaded by ``models.pretrained.load_convnext_weights``).

Randomness: stochastic depth needs a key per training step. The backbone keeps its own key as plain
``uint32`` key data in a :class:`DropPathKey` variable (part of the model's non-parameter state, as batch-norm
statistics are), split once per training call; evaluation neither uses nor advances it. So a train step
stays a pure function of (parameters, state, batch) and a resumed run draws the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dferjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD

SIZES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "tiny": ((96, 192, 384, 768), (3, 3, 9, 3)),
    "small": ((96, 192, 384, 768), (3, 3, 27, 3)),
    "base": ((128, 256, 512, 1024), (3, 3, 27, 3)),
}
"""size -> (widths, depths) of torchvision's ``convnext_<size>`` (Liu et al. 2022, section 2.6)."""

EPS = 1e-6
"""Epsilon of every ConvNeXt LayerNorm (torchvision's and the paper's)."""

weight_init = nnx.initializers.truncated_normal(stddev=0.02)
"""torchvision's ``trunc_normal_(std=0.02)`` of every ConvNeXt convolution and Linear weight."""


def gelu(x: jax.Array) -> jax.Array:
    """The exact GELU, x * Phi(x), PyTorch's ``nn.GELU()`` (JAX's default is the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


def layer_norm(dim: int, *, dtype: Any, rngs: nnx.Rngs, epsilon: float = EPS) -> nnx.LayerNorm:
    """A LayerNorm over the last (channel) axis with the two-pass variance, as PyTorch's."""
    return nnx.LayerNorm(dim, epsilon=epsilon, use_fast_variance=False, dtype=dtype, rngs=rngs)


class DropPathKey(nnx.Variable):
    """The stochastic-depth key data (uint32) of a ConvNeXt: non-parameter state, advanced each training call."""


class Block(nnx.Module):
    """A ConvNeXt block: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim: int, *, drop_prob: float, layer_scale: float, dtype: Any, rngs: nnx.Rngs):
        self.drop_prob = drop_prob
        self.dwconv = nnx.Conv(dim, dim, (7, 7), padding=((3, 3), (3, 3)), feature_group_count=dim,
                               kernel_init=weight_init, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(dim, dtype=dtype, rngs=rngs)
        self.pwconv1 = nnx.Linear(dim, 4 * dim, kernel_init=weight_init, dtype=dtype, rngs=rngs)
        self.pwconv2 = nnx.Linear(4 * dim, dim, kernel_init=weight_init, dtype=dtype, rngs=rngs)
        self.gamma = nnx.Param(jnp.full((dim,), layer_scale, jnp.float32))

    def __call__(self, x: jax.Array, key: jax.Array | None) -> jax.Array:
        """``key``: a PRNG key in training (stochastic depth), None in evaluation."""
        y = self.pwconv2(gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        y = y * self.gamma[...].astype(y.dtype)
        if key is not None and self.drop_prob > 0.0:
            keep = 1.0 - self.drop_prob
            mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1))
            y = y * (mask.astype(y.dtype) / jnp.asarray(keep, y.dtype))
        return x + y


class Downsample(nnx.Module):
    """LayerNorm, then a 2x2 convolution at stride 2: (B, H, W, C) -> (B, H/2, W/2, C')."""

    def __init__(self, in_ch: int, out_ch: int, *, dtype: Any, rngs: nnx.Rngs):
        self.norm = layer_norm(in_ch, dtype=dtype, rngs=rngs)
        self.conv = nnx.Conv(in_ch, out_ch, (2, 2), strides=2, padding="VALID", kernel_init=weight_init,
                             dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(self.norm(x))


def drop_probabilities(depths: Sequence[int], drop_path: float) -> list[list[float]]:
    """Per stage, each block's stochastic-depth probability: linear from 0 to ``drop_path`` over all blocks."""
    total = sum(depths)
    rates = [drop_path * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


class ConvNeXt(nnx.Module):
    """ConvNeXt trunk: images (B, H, W, 3) in [0, 255] -> the last stage's map (B, H/32, W/32, widths[3])."""

    def __init__(self, *, widths: Sequence[int] = SIZES["base"][0], depths: Sequence[int] = SIZES["base"][1],
                 drop_path: float = 0.0, layer_scale: float = 1e-6, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        if len(widths) != 4 or len(depths) != 4 or min(widths + depths) < 1:
            raise ValueError(f"ConvNeXt needs 4 positive widths and 4 positive depths, got widths {widths}, "
                             f"depths {depths}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"model.<name>.drop_path must be in [0, 1), got {drop_path}")
        self.dtype = dtype
        self.widths, self.depths = widths, depths
        self.stem = nnx.Conv(3, widths[0], (4, 4), strides=4, padding="VALID", kernel_init=weight_init,
                             dtype=dtype, rngs=rngs)
        self.stem_norm = layer_norm(widths[0], dtype=dtype, rngs=rngs)
        self.downsample = nnx.List([Downsample(widths[i], widths[i + 1], dtype=dtype, rngs=rngs) for i in range(3)])
        self.stages = nnx.List([
            nnx.List([Block(width, drop_prob=p, layer_scale=layer_scale, dtype=dtype, rngs=rngs) for p in probs])
            for width, probs in zip(widths, drop_probabilities(depths, drop_path))])
        self.norm = layer_norm(widths[3], dtype=jnp.float32, rngs=rngs)
        self.drop_key = DropPathKey(jax.random.key_data(rngs.params()))
        self.out_channels = widths[3]

    def __call__(self, images: jax.Array, train: bool,
                 after_stage: Mapping[int, Callable[[jax.Array], jax.Array]] | None = None) -> jax.Array:
        """images (B, H, W, 3) RGB in [0, 255] -> feature map (B, h, w, widths[3]) in the compute dtype.

        ``after_stage``: {stage index 0-3: f}, f applied to that stage's output before the next downsampling
        (MFER's DS attention after stages 3 and 4 are {2: ..., 3: ...}).
        """
        after_stage = after_stage or {}
        keys: list[jax.Array | None] = [None] * sum(self.depths)
        if train:
            key, following = jax.random.split(jax.random.wrap_key_data(self.drop_key[...]))
            self.drop_key[...] = jax.random.key_data(following)
            if any(block.drop_prob > 0.0 for stage in self.stages for block in stage):
                keys = list(jax.random.split(key, sum(self.depths)))
        x = (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
        x = self.stem_norm(self.stem(x.astype(self.dtype)))
        index = 0
        for s, stage in enumerate(self.stages):
            if s > 0:
                x = self.downsample[s - 1](x)
            for block in stage:
                x = block(x, keys[index])
                index += 1
            if s in after_stage:
                x = after_stage[s](x)
        return x

    def pool(self, x: jax.Array) -> jax.Array:
        """LayerNorm(global average pool): (B, h, w, C) -> (B, C) float32 (torchvision's ``classifier.0``)."""
        return self.norm(jnp.mean(x.astype(jnp.float32), axis=(1, 2)))


def torchvision_key(path: Sequence[Any]) -> str:
    """Our parameter path -> torchvision's ``convnext_*`` state-dict key.

    ``("stem", "kernel")`` -> ``features.0.0.weight``; ``("stages", 2, 5, "pwconv1", "bias")`` ->
    ``features.5.5.block.3.bias``; ``("downsample", 0, "norm", "scale")`` -> ``features.2.0.weight``;
    ``("norm", "scale")`` -> ``classifier.0.weight``; a block's ``gamma`` -> ``layer_scale``.
    """
    *parts, leaf = [str(p) for p in path]
    suffix = {"kernel": "weight", "scale": "weight", "bias": "bias", "gamma": "layer_scale"}[leaf]
    if parts == ["stem"]:
        return f"features.0.0.{suffix}"
    if parts == ["stem_norm"]:
        return f"features.0.1.{suffix}"
    if parts == ["norm"]:
        return f"classifier.0.{suffix}"
    if parts[0] == "downsample":
        return f"features.{2 * int(parts[1]) + 2}.{ {'norm': 0, 'conv': 1}[parts[2]] }.{suffix}"
    if parts[0] == "stages":
        prefix = f"features.{2 * int(parts[1]) + 1}.{parts[2]}"
        if leaf == "gamma":
            return f"{prefix}.layer_scale"
        return f"{prefix}.block.{ {'dwconv': 0, 'norm': 2, 'pwconv1': 3, 'pwconv2': 5}[parts[3]] }.{suffix}"
    raise KeyError(f"no torchvision ConvNeXt key for the parameter {'.'.join(map(str, path))}")


def from_torch_layout(path: Sequence[Any], value: Any) -> Any:
    """A torchvision array (numpy) in our layout: conv OIHW -> HWIO, Linear (out, in) -> (in, out),
    layer scale (C, 1, 1) -> (C,); LayerNorm and biases as they are."""
    leaf = str(path[-1])
    if leaf == "gamma":
        return value.reshape(-1)
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


def torch_shape(path: Sequence[Any], shape: Sequence[int]) -> tuple[int, ...]:
    """The shape torchvision stores our parameter ``path`` of ``shape`` in (the inverse of from_torch_layout)."""
    leaf, shape = str(path[-1]), tuple(shape)
    if leaf == "gamma":
        return (shape[0], 1, 1)
    if leaf == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if leaf == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    return shape
