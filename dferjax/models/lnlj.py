"""The local non-local joint network (LNLJ) of Shi, Mao, Gou, Yan, Jiao and Xiong (2024), a still-image model.

"Adaptively Enhancing Facial Expression Crucial Regions via Local Non-Local Joint Network", Machine
Intelligence Research 21(2) 331-348 (preprint arXiv 2203.14045, first titled "Adaptively Lighting up ...").
Registered as ``lnlj``. Per face image (B, S, S, 3)::

    regions     R windows of the face, one per facial crucial region (REGIONS below), each resampled
                to a (s, s) crop                                                        (B, R, s, s, 3)
    local part  one small CNN per region: f_r (B, R, d) and its logits z_r = W_r f_r   (B, R, K)
    non-local   a strided CNN stem over the whole face, ``nonlocal_blocks`` non-local blocks (Wang et al.
                2018, embedded Gaussian), global average pooling g (B, c), and the weight head
                a = softmax(W_a g) or sigmoid(W_a g): one weight per region              (B, R)
    U-Net       encoder-decoder with skip connections over the whole face; its full-resolution output
                map (B, S, S, c_u), 1x1-projected and averaged: u                        (B, u)
    fusion      y = W_y [a_1 f_1, ..., a_R f_R, u, g]   (+ sum_r a_r z_r with scale "logits" / "both")
    loss        CE(y) + local_loss_weight * mean_r CE(z_r)

The abstract (the only part of the preprint this project could read; ../shared/paper/) states: an ensemble
of local networks, one per facial local region; a non-local attention network estimating the significance
of each region whose weights are fed into the local part (so more crucial regions get higher weights,
without annotated crucial points); and a U-Net extracting integrated features of deep semantic and
low-level detail information. Everything else below is **our reading**, each a config value:

* ``regions``: "keypoints" (windows centred on the project's key-points, found in the 18 heat-maps the
  model declares in its InputSpec: centre of mass of each map, the region's centre the mean of its
  key-points; a region whose key-points are all missing falls back to its fixed window) or "fixed" (windows
  at the mean dlib shape's key-points in the crop that data preparation makes, ``fixed_margin`` = its face
  box margin, 0.25; no heat-maps). The paper uses no landmarks ("without manual annotation"), so "fixed"
  is the closest to it; "keypoints" follows the project's face structure (``keypoints.py``).
* ``REGIONS``: six regions from ``keypoints.REGIONS`` split finer (left brow+eye, right brow+eye, nose,
  mouth, left cheek, right cheek); ``region_window`` is a window's side as a fraction of the face side,
  ``region_size`` the crop side in pixels it is resampled to (bilinear).
* ``local_sharing``: "separate" (one CNN and head per region, as "an ensemble of local networks") or
  "shared" (one CNN and head for every region).
* The local CNN: per stage conv3x3-BN-ReLU and 2x2 max-pooling (``local_widths``), global average pooling.
* The non-local block: z = x + W_z softmax(theta(x) phi(x)^T) g(x), theta/phi/g 1x1 convolutions to half
  the channels, W_z a 1x1 convolution initialised at zero (the block starts as the identity; Wang et al.
  initialise the BatchNorm after W_z at zero to the same end).
* ``weight_fn``: "softmax" (weights sum to 1 over the regions) or "sigmoid" (each in (0, 1)).
* ``scale``: what the weights scale: "features" (a_r f_r enter the fused classifier), "logits" (the
  weighted sum of the local logits is added to the fused logits) or "both".
* The U-Net: per level two conv3x3-BN-ReLU (``unet_widths``), 2x2 max-pooling down, nearest x2 upsampling
  and a conv3x3 up, concatenation with the skip; a 1x1 convolution to ``unet_features`` channels.
* The loss: the fused cross-entropy plus ``local_loss_weight`` (1.0) times the mean of the local networks'
  cross-entropies; the local logits are recomputed from the embedding (which holds the unweighted f_r).
* With several frames per sample (not the paper's setting) each frame is classified and logits and
  embeddings are averaged over the frames.

``RECIPE`` is empty: the preprint's training settings were not readable here, so the base config's
optimiser and schedule apply. ``region_weights(inputs)`` gives the per-region weights (B, R) in the order of
``REGION_NAMES`` and ``region_boxes(inputs)`` the windows (B, R, 4) as (x0, y0, x1, y1) pixels, for
prediction and figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dferjax import keypoints
from dferjax.models.base import InputSpec, Outputs, compute_dtype
from dferjax.models.loss import cross_entropy
from dferjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD, batch_norm, conv

REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("left_eye", keypoints.REGIONS["upper_left"]),      # left brow and eye (as seen in the image)
    ("right_eye", keypoints.REGIONS["upper_right"]),    # right brow and eye
    ("nose", (10, 11)),                                 # nose bridge top and tip
    ("mouth", (12, 13, 14, 15)),                        # corners, upper and lower lip
    ("left_cheek", (16,)),
    ("right_cheek", (17,)),
)
"""The facial crucial regions: name and the key-points (``keypoints.py`` indices) whose mean is its centre."""

REGION_NAMES = tuple(name for name, _ in REGIONS)

MEAN_KEYPOINTS = np.array([
    (0.12, 0.21), (0.24, 0.13), (0.40, 0.16), (0.21, 0.29), (0.37, 0.29),
    (0.86, 0.20), (0.73, 0.13), (0.57, 0.16), (0.76, 0.28), (0.61, 0.29),
    (0.49, 0.26), (0.49, 0.49),
    (0.30, 0.68), (0.69, 0.67), (0.50, 0.64), (0.50, 0.79),
    (0.25, 0.55), (0.74, 0.54)], np.float32)
"""The 18 key-points of the mean dlib shape, (x, y) in units of dlib's face box (``keypoints.py``'s table)."""

WEIGHT_FNS = ("softmax", "sigmoid")
SCALES = ("features", "logits", "both")


def fixed_centres(margin: float) -> np.ndarray:
    """The regions' fixed centres (R, 2) as (x, y) fractions of the face crop that data preparation cuts
    with ``margin`` (fraction of the face box added on each side)."""
    crop = (MEAN_KEYPOINTS + margin) / (1.0 + 2.0 * margin)
    return np.stack([crop[list(idx)].mean(axis=0) for _, idx in REGIONS]).astype(np.float32)


def keypoints_from_heatmaps(heatmaps: jax.Array, image_size: int) -> tuple[jax.Array, jax.Array]:
    """Key-point positions (B, 18, 2) in pixels from heat-maps (B, h, w, 18), as each map's centre of mass,
    and whether each map holds a key-point (B, 18) (a missing key-point's map is all zero)."""
    maps = jnp.maximum(heatmaps.astype(jnp.float32), 0.0)
    h, w = maps.shape[1:3]
    gy = (jnp.arange(h, dtype=jnp.float32) + 0.5) * (image_size / h)
    gx = (jnp.arange(w, dtype=jnp.float32) + 0.5) * (image_size / w)
    total = jnp.sum(maps, axis=(1, 2))                                      # (B, 18)
    safe = jnp.maximum(total, 1e-6)
    x = jnp.einsum("bhwk,w->bk", maps, gx) / safe
    y = jnp.einsum("bhwk,h->bk", maps, gy) / safe
    return jnp.stack([x, y], axis=-1), total > 1e-3


def region_centres(heatmaps: jax.Array | None, image_size: int, margin: float) -> jax.Array:
    """Region centres (B, R, 2) in pixels: the mean of each region's present key-points (heat-maps given),
    else its fixed centre (``fixed_centres``). ``heatmaps`` None: the fixed centres for a batch of 1."""
    fixed = jnp.asarray(fixed_centres(margin)) * image_size                 # (R, 2)
    if heatmaps is None:
        return fixed[None]
    points, present = keypoints_from_heatmaps(heatmaps, image_size)
    member = np.zeros((len(REGIONS), keypoints.NUM_KEYPOINTS), np.float32)
    for r, (_, idx) in enumerate(REGIONS):
        member[r, list(idx)] = 1.0
    weight = jnp.asarray(member)[None] * present[:, None, :].astype(jnp.float32)   # (B, R, 18)
    count = jnp.sum(weight, axis=-1, keepdims=True)
    mean = jnp.einsum("brk,bkc->brc", weight, points) / jnp.maximum(count, 1.0)
    return jax.lax.stop_gradient(jnp.where(count > 0, mean, fixed[None]))


def crop_windows(images: jax.Array, centres: jax.Array, side: float, size: int) -> jax.Array:
    """Bilinear crops (B, R, size, size, C) of the square windows of ``side`` pixels centred on ``centres``
    (B or 1, R, 2) (x, y) in continuous pixel coordinates (pixel i spans [i, i + 1)); edges replicated."""
    b, h, w, _ = images.shape
    centres = jnp.broadcast_to(centres, (b,) + centres.shape[1:])
    offsets = (jnp.arange(size, dtype=jnp.float32) + 0.5) * (side / size) - side / 2.0 - 0.5
    ix = centres[..., 0:1] + offsets                                        # (B, R, size) pixel index coords
    iy = centres[..., 1:2] + offsets
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    wx, wy = (ix - x0)[:, :, None, :, None], (iy - y0)[:, :, :, None, None]
    bi = jnp.arange(b)[:, None, None, None]

    def at(yy, xx):
        yy = jnp.clip(yy, 0, h - 1).astype(jnp.int32)[:, :, :, None]
        xx = jnp.clip(xx, 0, w - 1).astype(jnp.int32)[:, :, None, :]
        return images[bi, yy, xx].astype(jnp.float32)

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def normalise(images: jax.Array) -> jax.Array:
    """RGB in [0, 255] -> ImageNet-normalised float32."""
    return (images.astype(jnp.float32) - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)


class ConvBNReLU(nnx.Module):
    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, dtype: Any, rngs: nnx.Rngs):
        self.conv = conv(in_ch, out_ch, 3, stride, dtype=dtype, rngs=rngs)
        self.bn = batch_norm(out_ch, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return nnx.relu(self.bn(self.conv(x), use_running_average=not train))


def max_pool(x: jax.Array) -> jax.Array:
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


class LocalNet(nnx.Module):
    """One region's CNN: per stage conv3x3-BN-ReLU then 2x2 max-pooling; GAP -> f (d,); a linear head -> z."""

    def __init__(self, widths: tuple[int, ...], num_classes: int, *, dtype: Any, rngs: nnx.Rngs):
        chans = (3,) + tuple(widths)
        self.stages = nnx.List([ConvBNReLU(chans[i], chans[i + 1], dtype=dtype, rngs=rngs)
                                for i in range(len(widths))])
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def features(self, crops: jax.Array, train: bool) -> jax.Array:
        x = crops
        for i, stage in enumerate(self.stages):
            x = stage(x, train)
            if i < len(self.stages) - 1:
                x = max_pool(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class NonLocalBlock(nnx.Module):
    """Wang et al. (2018), embedded Gaussian: z = x + W_z softmax(theta(x) phi(x)^T) g(x) over all positions.

    theta, phi, g: 1x1 convolutions to ``inner`` channels (with bias); W_z: 1x1 convolution back to the
    input's channels, kernel and bias initialised at zero, so that the block starts as the identity.
    """

    def __init__(self, channels: int, inner: int, *, dtype: Any, rngs: nnx.Rngs):
        def one(i, o, **kw):
            return nnx.Conv(i, o, (1, 1), dtype=dtype, rngs=rngs, **kw)
        self.theta, self.phi, self.g = one(channels, inner), one(channels, inner), one(channels, inner)
        self.out = one(inner, channels, kernel_init=nnx.initializers.zeros_init())

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        theta = self.theta(x).reshape(b, h * w, -1).astype(jnp.float32)
        phi = self.phi(x).reshape(b, h * w, -1).astype(jnp.float32)
        g = self.g(x).reshape(b, h * w, -1).astype(jnp.float32)
        attention = jax.nn.softmax(jnp.einsum("bic,bjc->bij", theta, phi), axis=-1)
        y = jnp.einsum("bij,bjc->bic", attention, g).reshape(b, h, w, -1).astype(x.dtype)
        return x + self.out(y)


class NonLocalNet(nnx.Module):
    """Strided stem (conv3x3 stride 2 -BN-ReLU per width), non-local blocks, GAP -> g; g -> R region logits."""

    def __init__(self, widths: tuple[int, ...], num_blocks: int, num_regions: int, *, dtype: Any, rngs: nnx.Rngs):
        chans = (3,) + tuple(widths)
        self.stem = nnx.List([ConvBNReLU(chans[i], chans[i + 1], stride=2, dtype=dtype, rngs=rngs)
                              for i in range(len(widths))])
        c = widths[-1]
        self.blocks = nnx.List([NonLocalBlock(c, max(c // 2, 1), dtype=dtype, rngs=rngs)
                                for _ in range(num_blocks)])
        self.weight_head = nnx.Linear(c, num_regions, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        for stage in self.stem:
            x = stage(x, train)
        for block in self.blocks:
            x = block(x)
        g = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return g, self.weight_head(g)


class UNet(nnx.Module):
    """Encoder-decoder with skip connections (Ronneberger et al. 2015), same spatial size in and out."""

    def __init__(self, widths: tuple[int, ...], out_features: int, *, dtype: Any, rngs: nnx.Rngs):
        down, up, in_ch = [], [], 3
        for wd in widths:
            down.append(nnx.List([ConvBNReLU(in_ch, wd, dtype=dtype, rngs=rngs),
                                  ConvBNReLU(wd, wd, dtype=dtype, rngs=rngs)]))
            in_ch = wd
        for i in range(len(widths) - 1, 0, -1):
            hi, lo = widths[i], widths[i - 1]
            up.append(nnx.List([ConvBNReLU(hi, lo, dtype=dtype, rngs=rngs),
                                ConvBNReLU(2 * lo, lo, dtype=dtype, rngs=rngs),
                                ConvBNReLU(lo, lo, dtype=dtype, rngs=rngs)]))
        self.down, self.up = nnx.List(down), nnx.List(up)
        self.project = nnx.Conv(widths[0], out_features, (1, 1), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, S, S, 3) normalised -> (B, S, S, out_features); S divisible by 2^(levels - 1)."""
        skips = []
        for i, (c1, c2) in enumerate(self.down):
            if i > 0:
                x = max_pool(x)
            x = c2(c1(x, train), train)
            skips.append(x)
        for (upconv, c1, c2), skip in zip(self.up, reversed(skips[:-1])):
            b, h, w, c = x.shape
            x = upconv(jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest"), train)
            x = c2(c1(jnp.concatenate([x, skip], axis=-1), train), train)
        return self.project(x)


class LNLJModel(nnx.Module):
    """inputs {"frames" (B, N, S, S, 3) in [0, 255], "heatmaps" (B, N, h, h, 18) with regions "keypoints"}
    -> Outputs(fused logits y, None, [f_1 .. f_R, u, g])."""

    TINY: ClassVar[dict[str, Any]] = dict(image_size=64, region_size=16, local_widths=(8, 16, 32),
                                          nonlocal_widths=(16, 32, 32), unet_widths=(8, 16, 32), unet_features=16)
    """Narrow widths and 64x64 faces for two CPU cores (the demo; tests shrink the image further)."""

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "regions": ("keypoints", "fixed"), "local_sharing": ("separate", "shared"), "weight_fn": WEIGHT_FNS,
        "scale": SCALES}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_frames", "image_size", "region_size", "unet_features")

    RECIPE: ClassVar[dict[str, Any]] = {}
    """Empty: the preprint's training settings were not readable here (the base config's apply)."""

    REGION_NAMES: ClassVar[tuple[str, ...]] = REGION_NAMES
    """The regions ``region_weights`` and ``region_boxes`` report, in their order (predict shows them)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """Section ``config.model.lnlj`` (every value but num_frames = 1 is our reading; module docstring)."""
        c = ml_collections.ConfigDict()
        c.num_frames = 1                      # a still-image model
        c.image_size = 112                    # face crop side
        c.regions = "keypoints"               # "keypoints" (heat-map centres) | "fixed" (mean-shape windows)
        c.fixed_margin = 0.25                 # data preparation's face-box margin (fixed windows)
        c.region_window = 0.375               # window side / face side
        c.region_size = 32                    # crop side in pixels the window is resampled to
        c.local_sharing = "separate"          # "separate" | "shared" local CNNs
        c.local_widths = (32, 64, 128)        # local CNN stages
        c.nonlocal_widths = (32, 64, 128)     # non-local stem stages (stride 2 each)
        c.nonlocal_blocks = 2                 # non-local blocks after the stem
        c.weight_fn = "softmax"               # "softmax" | "sigmoid" region weights
        c.scale = "features"                  # "features" | "logits" | "both": what the weights scale
        c.unet_widths = (16, 32, 64, 128)     # U-Net levels
        c.unet_features = 64                  # 1x1 projection of the U-Net output before pooling
        c.local_loss_weight = 1.0             # weight of the mean local cross-entropy in the loss
        c.heatmap_sigma = 1.0                 # key-point heat-maps' sigma, in heat-map cells
        return c

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> LNLJModel:
        keys = ("image_size", "regions", "fixed_margin", "region_window", "region_size", "local_sharing",
                "local_widths", "nonlocal_widths", "nonlocal_blocks", "weight_fn", "scale", "unet_widths",
                "unet_features", "local_loss_weight")
        return cls(num_classes=num_classes, dtype=dtype, rngs=rngs, **{k: section[k] for k in keys})

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec:
        size = int(section.image_size)
        heat = max(size // 4, 1) if section.regions == "keypoints" else None
        return InputSpec(num_frames=int(section.num_frames), image_size=size, heatmap_size=heat,
                         heatmap_sigma=float(section.heatmap_sigma) if heat else 0.0, num_classes=num_classes)

    def __init__(self, *, num_classes: int = 7, image_size: int = 112, regions: str = "keypoints",
                 fixed_margin: float = 0.25, region_window: float = 0.375, region_size: int = 32,
                 local_sharing: str = "separate", local_widths=(32, 64, 128), nonlocal_widths=(32, 64, 128),
                 nonlocal_blocks: int = 2, weight_fn: str = "softmax", scale: str = "features",
                 unet_widths=(16, 32, 64, 128), unet_features: int = 64, local_loss_weight: float = 1.0,
                 dtype: str = "float32", rngs: nnx.Rngs):
        for key, value, allowed in (("regions", regions, ("keypoints", "fixed")),
                                    ("local_sharing", local_sharing, ("separate", "shared")),
                                    ("weight_fn", weight_fn, WEIGHT_FNS), ("scale", scale, SCALES)):
            if value not in allowed:
                raise ValueError(f"model.lnlj.{key} = {value!r} is not one of {allowed}")
        if not 0.0 < float(region_window) <= 1.0:
            raise ValueError(f"model.lnlj.region_window = {region_window!r} must be in (0, 1] (a fraction of the face side)")
        levels = len(unet_widths) - 1
        if image_size % (2 ** levels):
            raise ValueError(f"model.lnlj.image_size = {image_size} must be divisible by 2^{levels} "
                             f"(the U-Net's {len(unet_widths)} levels, model.lnlj.unet_widths)")
        compute = compute_dtype(dtype)
        self.image_size, self.regions, self.fixed_margin = int(image_size), regions, float(fixed_margin)
        self.window, self.region_size = float(region_window) * image_size, int(region_size)
        self.weight_fn, self.scale, self.local_loss_weight = weight_fn, scale, float(local_loss_weight)
        self.num_regions, self.local_dim = len(REGIONS), int(local_widths[-1])
        self.unet_dim, self.global_dim = int(unet_features), int(nonlocal_widths[-1])
        count = self.num_regions if local_sharing == "separate" else 1
        self.local = nnx.List([LocalNet(tuple(local_widths), num_classes, dtype=compute, rngs=rngs)
                               for _ in range(count)])
        self.nonlocal_net = NonLocalNet(tuple(nonlocal_widths), int(nonlocal_blocks), self.num_regions,
                                        dtype=compute, rngs=rngs)
        self.unet = UNet(tuple(unet_widths), self.unet_dim, dtype=compute, rngs=rngs)
        fused_in = self.num_regions * self.local_dim + self.unet_dim + self.global_dim
        self.classifier = nnx.Linear(fused_in, num_classes, rngs=rngs)

    def _images(self, inputs: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array | None, int]:
        frames = inputs["frames"]
        b, n = frames.shape[:2]
        images = frames.reshape(b * n, *frames.shape[2:])
        heat = inputs.get("heatmaps") if self.regions == "keypoints" else None
        if heat is not None:
            heat = heat.reshape(b * n, *heat.shape[2:])
        return images, heat, n

    def region_boxes(self, inputs: Mapping[str, jax.Array]) -> jax.Array:
        """The region windows (B * N, R, 4) as (x0, y0, x1, y1) pixels of the face crop, REGION_NAMES order."""
        images, heat, _ = self._images(inputs)
        centres = jnp.broadcast_to(region_centres(heat, self.image_size, self.fixed_margin),
                                   (images.shape[0], self.num_regions, 2))
        half = self.window / 2.0
        return jnp.concatenate([centres - half, centres + half], axis=-1)

    def parts(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> dict[str, jax.Array]:
        """Every intermediate of one forward pass, per image (B * N first):

        crops (B, R, s, s, 3) float32 in [0, 255]; features f (B, R, d); local_logits z (B, R, K);
        weights a (B, R); weighted (B, R, d): a_r f_r where the weights scale the features, else f_r;
        unet_map (B, S, S, u); unet u (B, u); nonlocal_features g (B, c); logits y (B, K); embedding
        [f_1 .. f_R, u, g] (B, R*d + u + c).
        """
        images, heat, _ = self._images(inputs)
        b = images.shape[0]
        centres = region_centres(heat, self.image_size, self.fixed_margin)
        crops = crop_windows(images, centres, self.window, self.region_size)            # (B, R, s, s, 3)
        normed = normalise(crops)
        if len(self.local) == 1:
            net = self.local[0]
            flat = net.features(normed.reshape(b * self.num_regions, *normed.shape[2:]), train)
            features = flat.reshape(b, self.num_regions, -1)
        else:
            features = jnp.stack([net.features(normed[:, r], train) for r, net in enumerate(self.local)], axis=1)
        local_logits = self.local_logits(features)
        whole = normalise(images)
        g, weight_logits = self.nonlocal_net(whole, train)
        weights = (jax.nn.softmax(weight_logits, axis=-1) if self.weight_fn == "softmax"
                   else jax.nn.sigmoid(weight_logits))
        unet_map = self.unet(whole, train)
        u = jnp.mean(unet_map.astype(jnp.float32), axis=(1, 2))
        weighted = features * weights[..., None] if self.scale in ("features", "both") else features
        logits = self.classifier(jnp.concatenate([weighted.reshape(b, -1), u, g], axis=-1))
        if self.scale in ("logits", "both"):
            logits = logits + jnp.einsum("br,brk->bk", weights, local_logits)
        embedding = jnp.concatenate([features.reshape(b, -1), u, g], axis=-1)
        return dict(crops=crops, features=features, local_logits=local_logits, weights=weights,
                    weighted=weighted, unet_map=unet_map, unet=u, nonlocal_features=g, logits=logits,
                    embedding=embedding)

    def local_logits(self, features: jax.Array) -> jax.Array:
        """z_r = W_r f_r: (B, R, d) -> (B, R, K)."""
        if len(self.local) == 1:
            return self.local[0].head(features)
        return jnp.stack([net.head(features[:, r]) for r, net in enumerate(self.local)], axis=1)

    def region_weights(self, inputs: Mapping[str, jax.Array]) -> jax.Array:
        """The non-local network's weight of each region (B * N, R), in the order of REGION_NAMES."""
        images, _, _ = self._images(inputs)
        _, weight_logits = self.nonlocal_net(normalise(images), False)
        return (jax.nn.softmax(weight_logits, axis=-1) if self.weight_fn == "softmax"
                else jax.nn.sigmoid(weight_logits))

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs:
        n = inputs["frames"].shape[1]
        p = self.parts(inputs, train=train)
        logits, embedding = p["logits"].astype(jnp.float32), p["embedding"]
        if n > 1:
            logits = logits.reshape(-1, n, logits.shape[-1]).mean(axis=1)
            embedding = embedding.reshape(-1, n, embedding.shape[-1]).mean(axis=1)
        return Outputs(logits, None, embedding)

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """CE(y) + local_loss_weight * mean_r CE(z_r); z_r recomputed from the embedding's f_r.

        Parts: {"loss_fused", "loss_local" (unweighted)}.
        """
        fused = cross_entropy(outputs.logits, labels)
        b = outputs.embedding.shape[0]
        features = outputs.embedding[:, :self.num_regions * self.local_dim].reshape(b, self.num_regions, -1)
        z = self.local_logits(features)
        local = jnp.mean(jnp.stack([cross_entropy(z[:, r], labels) for r in range(self.num_regions)]))
        return fused + self.local_loss_weight * local, {"loss_fused": fused, "loss_local": local}
