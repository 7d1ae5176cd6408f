"""3D ResNet18 (torchvision's ``r3d_18``), its 3D residual attention, and the ``r3d18`` baseline model.

The 3D-ResNet18 is the baseline of DFEW (Jiang et al. 2020) and the network TDRAG (Liu et al. 2024,
``models.tdrag``) builds on. It is torchvision's ``r3d_18`` (Tran et al. 2018, "A closer look at
spatiotemporal convolutions", R3D): a stem Conv3d 3 -> 64, kernel (3, 7, 7), stride (1, 2, 2),
padding (1, 3, 3), BatchNorm, ReLU (no max pool); four stages of two 3D basic blocks (3x3x3
convolutions, padding 1) of 64, 128, 256 and 512 channels, the first block of stages 2-4 strided by 2
in time and space with a strided 1x1x1 convolution + BatchNorm shortcut; a global average pool and a
linear classifier. 16 frames of 112x112 leave a 2 x 7 x 7 x 512 map.

Layout is NDHWC (batch, time, height, width, channels). Inputs are RGB frames in [0, 255]; the
Kinetics-400 normalisation torchvision's video models expect (mean (0.43216, 0.394666, 0.37645), std
(0.22803, 0.22145, 0.216989) of [0, 1] pixels) happens here, on the accelerator. Layer names follow
torchvision's (``stem.0``, ``stem.1``, ``layer2.0.conv1.0``, ``layer2.0.downsample.1``, ``fc``) so that
an ``r3d_18`` state dict maps one to one (``models.pretrained.load_r3d18_weights``); the equality with
torchvision's network on the same weights is tested.

On the CPU each 3D convolution runs as one 2D convolution over stacked temporal taps
(:func:`conv3d_as_2d`; XLA:CPU has no fast 3D convolution), elsewhere as XLA's 3D convolution; the
parameters are the same.

Two settings beyond torchvision's, used by TDRAG: ``temporal_strides`` (the temporal stride of each
stage's first block; torchvision's is (1, 2, 2, 2)) and ``attention_stages`` (stages with a 3D
residual attention module, :class:`MaskBranch`). The ``r3d18`` model registered here is the plain
network with its DFEW training recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from dferjax.models.base import InputSpec, Outputs, compute_dtype
from dferjax.models.loss import cross_entropy
from dferjax.models.resnet import _conv_init, batch_norm, max_pool_3x3_s2

KINETICS_MEAN = (0.43216 * 255, 0.394666 * 255, 0.37645 * 255)
"""Per-channel mean of torchvision's video models (Kinetics-400), in pixels."""
KINETICS_STD = (0.22803 * 255, 0.22145 * 255, 0.216989 * 255)
"""... and standard deviation, in pixels."""
R3D18_TEMPORAL_STRIDES = (1, 2, 2, 2)
"""torchvision's r3d_18: stages 2-4 halve the time axis."""
KEYFRAME_MEASURES = ("", "histogram", "mad", "ssim")
"""``model.<name>.keyframes``: "" (off) or a measure of ``data.keyframes.MEASURES`` (repeated here: the
models do not import the data layer)."""

# The DFEW baseline's training recipe (Jiang et al. 2020), the default of ``r3d18`` and ``tdrag``
# (applied by ``models.select``, a config file's ``model=``).
DFEW_BASELINE_RECIPE: dict[str, Any] = {
    "train.optimizer": "adam",
    "train.learning_rate": 1e-3,
    "train.b1": 0.9,
    "train.b2": 0.999,                 # PyTorch's Adam default (our reading: the recipe names no betas)
    "train.weight_decay": 0.0,
    "train.lr_schedule": "exponential",
    "train.lr_decay_factor": 0.9,      # lr x 0.9 after every epoch (ExponentialLR(gamma=0.9))
    "train.epochs": 100,
    "train.batch_size": 64,
    "data.crop_scale": (1.0, 1.0),     # no augmentation: no random crop ...
    "data.flip": False,                # ... and no flip
    # 16 segments x 1 frame: one random frame per equal segment in training (sorted random frames,
    # stratified), the segment centres at test (evenly spaced) -- the baseline's sampling.
    "data.num_segments": 16,
    "data.frames_per_segment": 1,
}


def conv3d_as_2d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int],
                 padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """A 3D convolution (NDHWC, kernel kT x kH x kW x I x O) computed as one 2D convolution: the kT
    temporal taps of every output step are stacked along the channels, (B * T', H, W, kT * I), against
    the kernel reshaped to (kH, kW, kT * I, O).

    The same sums as ``lax.conv_general_dilated`` in 3D (up to float rounding). XLA:CPU has no fast path
    for 3D convolutions: on two cores this runs a 3x3x3 convolution of the demo's size about 7x faster
    forward and 2.7x faster with its gradient, at kT copies of the input.
    """
    kt, st = kernel.shape[0], stride[0]
    x = jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))
    b, t, h, w, c = x.shape
    steps = (t - kt) // st + 1
    taps = jnp.concatenate([x[:, d:d + st * (steps - 1) + 1:st] for d in range(kt)], axis=-1)
    k2 = kernel.transpose(1, 2, 0, 3, 4).reshape(kernel.shape[1], kernel.shape[2], kt * c, kernel.shape[4])
    y = jax.lax.conv_general_dilated(taps.reshape(b * steps, h, w, kt * c), k2, stride[1:], padding[1:],
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.reshape(b, steps, *y.shape[1:])


class Conv3d(nnx.Module):
    """A 3D convolution, NDHWC, with ``nnx.Conv``'s parameters (``kernel`` kT x kH x kW x I x O float32,
    optional ``bias``) and compute ``dtype``; on the CPU it runs as :func:`conv3d_as_2d`, elsewhere as
    XLA's 3D convolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
                 padding: tuple[tuple[int, int], ...], *, use_bias: bool = False, kernel_init: Any = _conv_init,
                 dtype: Any, rngs: nnx.Rngs):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (*kernel, in_ch, out_ch), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if use_bias else None
        self.stride = tuple(stride)
        self.padding = tuple(tuple(p) for p in padding)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x, k = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        if jax.default_backend() == "cpu":
            y = conv3d_as_2d(x, k, self.stride, self.padding)
        else:
            y = jax.lax.conv_general_dilated(x, k, self.stride, self.padding,
                                             dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


def conv3d(in_ch: int, out_ch: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], *,
           use_bias: bool = False, dtype: Any, rngs: nnx.Rngs) -> Conv3d:
    """A 3D convolution with PyTorch's symmetric padding (kernel // 2 on every side), torchvision's
    video-ResNet initialisation (Kaiming normal, fan out)."""
    return Conv3d(in_ch, out_ch, kernel, stride, tuple((k // 2, k // 2) for k in kernel), use_bias=use_bias,
                  dtype=dtype, rngs=rngs)


class BasicBlock3D(nnx.Module):
    """torchvision's video ``BasicBlock`` with ``Conv3DSimple``: relu(bn(conv(relu(bn(conv(x))))) + x).

    ``conv1`` = [3x3x3 conv, BatchNorm] (then ReLU), ``conv2`` = [3x3x3 conv, BatchNorm], ``downsample``
    = [1x1x1 conv, BatchNorm] where the stride or width changes (torchvision's Sequential indices).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: tuple[int, int, int], *, dtype: Any, rngs: nnx.Rngs):
        self.conv1 = nnx.List([conv3d(in_ch, out_ch, (3, 3, 3), stride, dtype=dtype, rngs=rngs),
                               batch_norm(out_ch, dtype=dtype, rngs=rngs)])
        self.conv2 = nnx.List([conv3d(out_ch, out_ch, (3, 3, 3), (1, 1, 1), dtype=dtype, rngs=rngs),
                               batch_norm(out_ch, dtype=dtype, rngs=rngs)])
        if stride != (1, 1, 1) or in_ch != out_ch:
            self.downsample = nnx.List([conv3d(in_ch, out_ch, (1, 1, 1), stride, dtype=dtype, rngs=rngs),
                                        batch_norm(out_ch, dtype=dtype, rngs=rngs)])
        else:
            self.downsample = None

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ra = not train
        y = nnx.relu(self.conv1[1](self.conv1[0](x), use_running_average=ra))
        y = self.conv2[1](self.conv2[0](y), use_running_average=ra)
        if self.downsample is not None:
            x = self.downsample[1](self.downsample[0](x), use_running_average=ra)
        return nnx.relu(y + x)


def mask_pools(stage: int) -> int:
    """Spatial max pools of the mask branch at stage ``stage`` (1-4): 4 - stage, at least 1.

    As the Residual Attention Network (Wang et al. 2017, section 3.3 and Table 1): the mask's bottom
    reaches the resolution of the last stage (stage 1 at 56x56 pools three times to 7x7, stage 2 twice,
    stage 3 once); our reading adds one pool at stage 4.
    """
    return max(1, 4 - stage)


class MaskBranch(nnx.Module):
    """M(x) of a 3D residual attention module (our reading of Wang et al. 2017 in 3D): (B, T, H, W, C)
    -> soft mask in (0, 1) of the same shape.

    Down in space: ``pools`` max pools (3x3, stride 2, padding 1, per frame); a 3x3x3 convolution +
    BatchNorm + ReLU at the bottom (the mask sees time too: "3D"); up in space: bilinear interpolation
    back to H x W (Wang et al.'s upsampling); then two 1x1x1 convolutions, the first with BatchNorm +
    ReLU, the last (``out``, with a bias) followed by a sigmoid (Wang et al.'s "two consecutive 1x1
    convolution layers" and sigmoid). Wang et al.'s residual units and skip connections inside the mask
    are left out (a lighter mask, our reading).
    """

    def __init__(self, ch: int, pools: int, *, dtype: Any, rngs: nnx.Rngs):
        self.pools = pools
        self.dtype = dtype
        self.conv = nnx.List([conv3d(ch, ch, (3, 3, 3), (1, 1, 1), dtype=dtype, rngs=rngs),
                              batch_norm(ch, dtype=dtype, rngs=rngs)])
        self.proj = nnx.List([conv3d(ch, ch, (1, 1, 1), (1, 1, 1), dtype=dtype, rngs=rngs),
                              batch_norm(ch, dtype=dtype, rngs=rngs)])
        self.out = Conv3d(ch, ch, (1, 1, 1), (1, 1, 1), ((0, 0),) * 3, use_bias=True,
                          kernel_init=nnx.initializers.lecun_normal(), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        ra = not train
        b, t, h, w, c = x.shape
        m = x.reshape(b * t, h, w, c)
        for _ in range(self.pools):
            m = max_pool_3x3_s2(m)
        m = m.reshape(b, t, *m.shape[1:])
        m = nnx.relu(self.conv[1](self.conv[0](m), use_running_average=ra))
        if m.shape[2:4] != (h, w):
            m = jax.image.resize(m, (b, t, h, w, m.shape[-1]), "linear").astype(m.dtype)
        m = nnx.relu(self.proj[1](self.proj[0](m), use_running_average=ra))
        return jax.nn.sigmoid(self.out(m))


class R3D18(nnx.Module):
    """The 3D ResNet18 trunk (stem and four stages, no pool or classifier): frames (B, T, H, W, 3) in
    [0, 255] -> feature map (B, T', H', W', C).

    Args:
      widths: the four stages' channels (torchvision: 64, 128, 256, 512).
      temporal_strides: the temporal stride of each stage's first block, 1 or 2 (torchvision:
        (1, 2, 2, 2)); the spatial strides are torchvision's (1, 2, 2, 2).
      attention_stages: stages (1-4) whose second block becomes the trunk of a residual attention
        module: x = block1(input), output (1 + M(x)) * block2(x) (Wang et al. 2017, Eq. 1 as
        H = (1 + M) * F), M a :class:`MaskBranch` ``mask<stage>``. Empty: the plain r3d_18.
      dtype: compute dtype.
    """

    def __init__(self, *, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 temporal_strides: tuple[int, int, int, int] = R3D18_TEMPORAL_STRIDES,
                 attention_stages: tuple[int, ...] = (), dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if len(temporal_strides) != 4 or any(s not in (1, 2) for s in temporal_strides):
            raise ValueError(f"model.<name>.temporal_strides must be 4 values of 1 or 2 (one per stage), "
                             f"got {temporal_strides!r}")
        if any(s not in (1, 2, 3, 4) for s in attention_stages):
            raise ValueError(f"model.<name>.attention_stages must be stages among 1, 2, 3, 4, got {attention_stages!r}")
        self.dtype = dtype
        self.temporal_strides = tuple(int(s) for s in temporal_strides)
        self.stem = nnx.List([conv3d(3, widths[0], (3, 7, 7), (1, 2, 2), dtype=dtype, rngs=rngs),
                              batch_norm(widths[0], dtype=dtype, rngs=rngs)])
        in_ch = widths[0]
        stages, masks = [], []
        for s, (width, t_stride) in enumerate(zip(widths, self.temporal_strides), start=1):
            stride = (t_stride, 1, 1) if s == 1 else (t_stride, 2, 2)
            stages.append(nnx.List([BasicBlock3D(in_ch, width, stride, dtype=dtype, rngs=rngs),
                                    BasicBlock3D(width, width, (1, 1, 1), dtype=dtype, rngs=rngs)]))
            masks.append(MaskBranch(width, mask_pools(s), dtype=dtype, rngs=rngs) if s in attention_stages else None)
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.mask1, self.mask2, self.mask3, self.mask4 = masks
        self.out_channels = in_ch

    def stem_forward(self, frames: jax.Array, train: bool) -> jax.Array:
        """Normalisation and stem: frames (B, T, H, W, 3) in [0, 255] -> (B, T, H/2, W/2, widths[0])."""
        x = (frames.astype(jnp.float32) - jnp.array(KINETICS_MEAN)) / jnp.array(KINETICS_STD)
        x = x.astype(self.dtype)
        return nnx.relu(self.stem[1](self.stem[0](x), use_running_average=not train))

    def stage_forward(self, stage: int, x: jax.Array, train: bool) -> jax.Array:
        """Stage ``stage`` (1-4): block2(block1(x)), or with attention x1 = block1(x),
        (1 + M(x1)) * block2(x1)."""
        blocks = (self.layer1, self.layer2, self.layer3, self.layer4)[stage - 1]
        mask = (self.mask1, self.mask2, self.mask3, self.mask4)[stage - 1]
        x = blocks[0](x, train)
        trunk = blocks[1](x, train)
        return trunk if mask is None else (1 + mask(x, train)) * trunk

    def __call__(self, frames: jax.Array, train: bool) -> jax.Array:
        x = self.stem_forward(frames, train)
        for stage in range(1, 5):
            x = self.stage_forward(stage, x, train)
        return x


def time_steps(num_frames: int, temporal_strides: tuple[int, ...]) -> int:
    """Time steps the trunk leaves of ``num_frames`` (each stride-2 stage rounds up, as the convolution)."""
    t = num_frames
    for s in temporal_strides:
        t = (t - 1) // s + 1
    return t


class R3D18Model(nnx.Module):
    """``r3d18``: inputs {"frames" (B, N, H, W, 3) in [0, 255]} -> Outputs (no auxiliary logits).

    torchvision's r3d_18: the trunk, the global average pool over time and space (the 512-d embedding)
    and the linear classifier ``fc``; the loss is the cross-entropy.
    """

    TINY: ClassVar[dict[str, Any]] = dict(num_frames=8, image_size=64, widths=(16, 32, 64, 64))
    """Shrunk for two CPU cores (the demo; tests shrink frames and size further)."""
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"keyframes": KEYFRAME_MEASURES}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size")
    RECIPE: ClassVar[dict[str, Any]] = DFEW_BASELINE_RECIPE

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.r3d18``: torchvision's r3d_18 on 16 frames of 112x112."""
        c = ml_collections.ConfigDict()
        c.num_frames = 16                    # frames per clip (the DFEW baseline's 16)
        c.image_size = 112                   # face crop side (r3d_18's 112x112)
        c.widths = (64, 128, 256, 512)       # stage widths
        c.temporal_strides = R3D18_TEMPORAL_STRIDES  # stage 1-4 temporal strides (torchvision's)
        c.keyframes = ""                     # "" (all frames, the baseline) or histogram | mad | ssim
        c.keyframe_threshold = 0.99          # redundancy above which a frame is dropped
        c.backbone_weights = ""              # optional torchvision r3d_18 state dict (e.g. Kinetics-400)
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> R3D18Model:
        return cls(num_classes=num_classes, widths=tuple(section.widths),
                   temporal_strides=tuple(section.temporal_strides), dtype=dtype, rngs=rngs)

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        return InputSpec(num_frames=int(section.num_frames), image_size=int(section.image_size),
                         heatmap_size=None, heatmap_sigma=0.0, num_classes=num_classes,
                         keyframes=str(section.keyframes), keyframe_threshold=float(section.keyframe_threshold))

    def __init__(self, *, num_classes: int = 7, widths: tuple[int, int, int, int] = (64, 128, 256, 512),
                 temporal_strides: tuple[int, int, int, int] = R3D18_TEMPORAL_STRIDES, dtype: str = "float32",
                 rngs: nnx.Rngs):
        self.backbone = R3D18(widths=tuple(widths), temporal_strides=tuple(temporal_strides),
                              dtype=compute_dtype(dtype), rngs=rngs)
        # torchvision initialises the classifier N(0, 0.01), bias 0.
        self.fc = nnx.Linear(self.backbone.out_channels, num_classes,
                             kernel_init=nnx.initializers.normal(0.01), rngs=rngs)

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        maps = self.backbone(inputs["frames"], train)                          # (B, T', h, w, C)
        embedding = jnp.mean(maps.astype(jnp.float32), axis=(1, 2, 3))          # (B, C)
        return Outputs(self.fc(embedding), None, embedding)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of the logits."""
        loss = cross_entropy(outputs.logits, labels)
        return loss, {"loss_t": loss}
