"""The grain input pipeline: shards from data_prep -> sampled, augmented, batched model inputs.

Reading (docs/DESIGN.md): a random-access source over the indexed TFRecord shards of the configured
splits (``records.ShardedDataSource``) and a global shuffle seeded per epoch. Each process of a
multi-host run reads its contiguous share of every global batch, so that the processes' batches,
concatenated in process order as ``jax.make_array_from_process_local_data`` does, are exactly the
global batch one process would read.

Sampling (as Former-DFER, which the paper follows for its 16-frame input): ``clips.segment_indices``
cuts a clip's stored frames into 8 segments and takes 2 consecutive frames from each, at random
offsets in training and at the segment centres at test; shorter clips repeat frames evenly. A model
that asks for keyframes (``ExampleSpec.keyframes``, TDRAG's) first drops the stored frames that repeat
the last kept one (``keyframes.select_keyframes``, on all decoded stored frames), and the segments cut
the kept frames only; the number kept goes with the example as ``keyframes``.

Augmentation, training only (the peers' group transforms): one random resized crop (area fraction
``data.crop_scale``, aspect ratio ``data.crop_ratio``) and one horizontal flip with probability 1/2 for
all frames of a clip. Key-points follow the same affine map, and the flip goes through
``keypoints.flip_keypoints`` (mirror x, swap left/right indices), so the heat-maps, rendered from the
transformed key-points by ``keypoints.render_heatmaps`` at the model's feature-map resolution, stay on
their key-points. The static-FER recipes add three torchvision transforms, each off by default:
random crop with padding (``data.crop_padding``, :func:`random_padded_crop`), colour jitter
(``data.color_jitter``, :func:`color_jitter`) and random erasing (``data.random_erasing``,
:func:`random_erasing_params`). One draw per example serves all its frames; an example's order is
padded crop -> random resized crop (one box, resized once) -> flip -> colour jitter -> erasing ->
heat-maps (from the key-points: the colours and the erased rectangle do not move them).
:func:`model_inputs` is the one function that turns a prepared clip's frames and key-points into
model inputs; predict calls it too. A model that takes no heat-maps gets none
(``ExampleSpec.heatmap_size`` None): nothing is rendered.

Determinism: every random choice of an example comes from grain's per-index generator (``random_map``
with a seed per epoch), so the batches depend only on (seed, epoch, position), not on the number of
worker processes. The iterator's checkpointable state is ``{"epoch", "position"}`` (batches already
taken in that epoch); resuming rebuilds the epoch's dataset and starts at that batch.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any, Sequence

import cv2
import grain
import numpy as np

from dferjax import keypoints as kp
from dferjax.data import records
from dferjax.data.clips import segment_indices
from dferjax.data.dataset import DataConfigError
from dferjax.data.keyframes import select_keyframes

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")
"""``data.padding_mode``: torchvision RandomCrop's ``padding_mode`` names, which are numpy.pad's
(``constant`` pads zeros)."""
ERASING_VALUES = ("mean", "zero", "random")
"""``data.erasing_value``, what an erased rectangle holds. The recipes apply torchvision's
RandomErasing after Normalize, so its default value 0 is the ImageNet mean colour in pixels: ``mean``
(124, 116, 104); ``zero`` is black (value 0 before Normalize); ``random`` is its ``value='random'``,
standard normal noise in normalised units, in pixels ``mean + std * N(0, 1)`` rounded and clipped."""
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")
"""The parts of ``data.color_jitter``, in its order."""
GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma, torchvision's (and PIL's) RGB -> grey."""
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
"""Per-channel mean and standard deviation in pixels, those the models normalise their input with
(``models.resnet``; repeated here: the data layer does not import the models)."""
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    """How a prepared clip becomes one example: sampling, augmentation and the heat-maps to render.

    The engine builds it from the model's declared inputs (``models.InputSpec``: frames, image size,
    heat-map resolution) and the config's ``data`` section; this layer only sees the numbers.
    Nothing is checked here (``keypoints.render_heatmaps`` refuses ``heatmap_sigma`` <= 0).

    Attributes:
      image_size: frames are resized to image_size x image_size pixels.
      num_segments: a clip's stored frames are cut into this many segments ...
      frames_per_segment: ... each giving this many consecutive frames (``clips.segment_indices``).
      heatmap_size: side of the rendered heat-maps, in heat-map cells (the model's feature-map
        resolution); None: the model takes none (no rendering).
      heatmap_sigma: Gaussian standard deviation in heat-map cells.
      crop_scale: random resized crop (training): range of the crop's area, as a fraction of the frame's.
      crop_ratio: ... and range of its aspect ratio (w / h).
      flip: random horizontal flip, probability 1/2, in training.
      num_classes: labels must lie in [0, num_classes) (checked as each record is read); 0: unchecked.
      crop_padding: random crop with padding (training), in pixels of the stored frames; 0: off
        (:func:`random_padded_crop`).
      padding_mode: what the padding holds: one of :data:`PADDING_MODES` (``constant`` = zeros).
      color_jitter: (brightness, contrast, saturation, hue) strengths of torchvision's ColorJitter
        (training); 0 turns one off (:func:`color_jitter_params`).
      random_erasing: probability of erasing one rectangle (training); 0: off
        (:func:`random_erasing_params`).
      erasing_scale: range of the erased area, as a fraction of the frame's.
      erasing_ratio: range of the erased rectangle's aspect ratio (h / w, as torchvision).
      erasing_value: what fills it: one of :data:`ERASING_VALUES`.
      keyframes: keyframe selection by redundancy before the segment sampling (the model's
        ``model.<name>.keyframes``, through its InputSpec): a measure of ``keyframes.MEASURES``; "" (default): off, the segments cut all stored frames.
      keyframe_threshold: a stored frame whose redundancy coefficient against the last kept one is
        above it is dropped (:func:`~dferjax.data.keyframes.select_keyframes`).
    """

    image_size: int                 # frames are resized to image_size x image_size
    num_segments: int = 8           # a clip is cut into this many segments ...
    frames_per_segment: int = 2     # ... each giving this many consecutive frames
    heatmap_size: int | None = 7    # side of the rendered heat-maps; None: the model takes none (no rendering)
    heatmap_sigma: float = 1.0      # Gaussian standard deviation in heat-map cells
    crop_scale: tuple[float, float] = (0.08, 1.0)   # random resized crop: area fraction range
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # ... and aspect ratio range (w / h)
    flip: bool = True               # random horizontal flip in training
    num_classes: int = 0            # labels must be in [0, num_classes); 0: not checked
    crop_padding: int = 0           # random crop with padding, stored-frame pixels; 0: off
    padding_mode: str = "constant"  # PADDING_MODES
    color_jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # brightness, contrast, saturation, hue
    random_erasing: float = 0.0     # probability of erasing a rectangle; 0: off
    erasing_scale: tuple[float, float] = (0.02, 0.33)  # erased area fraction range
    erasing_ratio: tuple[float, float] = (0.3, 3.3)    # ... and aspect ratio range (h / w)
    erasing_value: str = "mean"     # ERASING_VALUES
    keyframes: str = ""             # keyframes.MEASURES: segments cut the keyframes only; "": off
    keyframe_threshold: float = 0.99  # drop a frame whose redundancy against the last kept one is above

    @property
    def num_frames(self) -> int:
        """Frames per example: ``num_segments * frames_per_segment``."""
        return self.num_segments * self.frames_per_segment


# --- the transform shared by training, evaluation and predict ---------------------------------

def random_resized_crop(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                        ratio: tuple[float, float], attempts: int = 10) -> tuple[int, int, int, int]:
    """A crop box (x0, y0, w, h) in whole pixels, as torchvision's RandomResizedCrop chooses it.

    Area fraction uniform in ``scale``, log aspect ratio uniform in ``ratio``; after ``attempts`` boxes
    that do not fit, the largest centred box within the ratio range.

    Args:
      rng: the generator; each attempt draws two uniforms, and a box that fits two integers (its
        position).
      height: image height, pixels.
      width: image width, pixels.
      scale: (low, high) range of the crop's area as a fraction of the image's.
      ratio: (low, high) range of the crop's aspect ratio w / h; both must be positive.
      attempts: random boxes tried before the fallback.
    Returns:
      (x0, y0, w, h) ints, pixels, with the box inside the image (0 < w <= width, 0 < h <= height
      for a random box).
    Raises:
      ValueError: a bound of ``ratio`` is not positive (its logarithm is taken).
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_padded_crop(rng: np.random.Generator, height: int, width: int, padding: int
                       ) -> tuple[int, int, int, int]:
    """torchvision's RandomCrop((height, width), padding=padding) as a box (x0, y0, w, h) of the unpadded frame.

    RandomCrop pads the frame by ``padding`` pixels on each side and takes a random window of the
    frame's own size: the window's corner is uniform over the (2p + 1)^2 positions. In the unpadded
    frame's pixels that window is the box (x0, y0) = (j - p, i - p), partly outside the frame;
    :func:`model_inputs` pads where a box leaves the frame (``ExampleSpec.padding_mode``). Static-FER
    recipes use it: DAN's (Wen et al. 2023) for RAF-DB, AffectNet and FERPlus, and repositories
    following it on FER2013, RandomCrop(224, padding=32) (there inside RandomApply with a rotation,
    p = 0.2; here every example, without rotation).

    Args:
      rng: the generator; draws two integers (the row, then the column, as torchvision).
      height: frame height, pixels.
      width: frame width, pixels.
      padding: p, pixels on each side (>= 0).
    Returns:
      (x0, y0, width, height) ints, x0 and y0 in [-padding, padding].
    """
    i = int(rng.integers(0, 2 * padding + 1))
    j = int(rng.integers(0, 2 * padding + 1))
    return j - padding, i - padding, width, height


def color_jitter_params(rng: np.random.Generator, strengths: Sequence[float]) -> tuple[tuple[str, float], ...]:
    """The draw of torchvision's ColorJitter(brightness, contrast, saturation, hue): the parts in a
    random order, each with its factor.

    As ``ColorJitter.get_params``: a random permutation of the four, then brightness, contrast and
    saturation factors uniform in [max(0, 1 - s), 1 + s] and a hue shift uniform in [-h, h] (a
    fraction of the hue circle); a part of strength 0 is left out. RAF-DB and AffectNet recipes use
    it, e.g. ColorJitter(0.2, 0.2, 0.2) before RandomErasing, or brightness and contrast 0.4.

    Args:
      rng: the generator: a permutation of 4, then one uniform per part of non-zero strength.
      strengths: (brightness, contrast, saturation, hue), each >= 0, hue <= 0.5.
    Returns:
      ((name, factor), ...) in the order to apply them, names of :data:`JITTER_NAMES`; empty when
      every strength is 0.
    """
    order = rng.permutation(len(JITTER_NAMES))
    factors = {}
    for k, (name, strength) in enumerate(zip(JITTER_NAMES, strengths)):
        if strength > 0:
            low, high = (-strength, strength) if name == "hue" else (max(0.0, 1 - strength), 1 + strength)
            factors[k] = float(rng.uniform(low, high))
    return tuple((JITTER_NAMES[k], factors[k]) for k in order if k in factors)


def _grey(x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(GREY_WEIGHTS, np.float32)


def color_jitter(frames: np.ndarray, params: Sequence[tuple[str, float]]) -> np.ndarray:
    """uint8 RGB frames (..., H, W, 3) through torchvision's colour adjustments, in the order given.

    torchvision's definitions: brightness scales the pixels (a blend with black); contrast blends with
    the mean grey level of each frame; saturation blends with the frame's grey image (ITU-R 601-2
    luma, :data:`GREY_WEIGHTS`); hue rotates the hue in HSV by the factor (a fraction of the circle).
    The math is in float32 pixels, clipped to [0, 255] after each part (as torchvision clamps) and
    rounded once at the end (torchvision on uint8 truncates after each part; ours keeps the precision).

    Args:
      frames: uint8 (..., H, W, 3) RGB frames; each frame (H, W) has its own contrast mean.
      params: ((name, factor), ...) as :func:`color_jitter_params` draws them.
    Returns:
      uint8 frames of the same shape.
    """
    x = np.array(frames, np.float32)                    # a copy, changed in place below
    for name, factor in params:
        f = np.float32(factor)
        if name == "brightness":
            x *= f
        elif name == "contrast":
            mean = _grey(x).mean(axis=(-2, -1), keepdims=True)[..., None]
            x *= f
            x += (1 - f) * mean
        elif name == "saturation":
            grey = _grey(x)[..., None]
            grey *= 1 - f
            x *= f
            x += grey
        elif name == "hue":
            shape = x.shape
            x *= np.float32(1 / 255)
            hsv = cv2.cvtColor(x.reshape(-1, shape[-2], 3), cv2.COLOR_RGB2HSV)
            hue = hsv[..., 0]                                  # a view: H in degrees, [0, 360)
            hue += np.float32(factor * 360 % 360)
            np.subtract(hue, np.float32(360), out=hue, where=hue >= 360)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(shape)
            x *= np.float32(255)
        else:
            raise ValueError(f"colour jitter part {name!r} is not one of {', '.join(JITTER_NAMES)}")
        np.clip(x, 0, 255, out=x)
    return np.rint(x, out=x).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Erasing:
    """One erased rectangle of :func:`random_erasing_params`, the same in every frame of an example.

    Attributes:
      box: (x0, y0, w, h) in pixels of the model's frames.
      fill: uint8 (3,) colour or (h, w, 3) noise written there.
    """

    box: tuple[int, int, int, int]
    fill: np.ndarray


def random_erasing_params(rng: np.random.Generator, height: int, width: int, probability: float,
                          scale: tuple[float, float], ratio: tuple[float, float], value: str,
                          attempts: int = 10) -> Erasing | None:
    """The draw of torchvision's RandomErasing(p, scale, ratio, value) (Zhong et al. 2020), or None.

    With ``probability``: up to ``attempts`` rectangles of area fraction uniform in ``scale`` and log
    aspect ratio (h / w) uniform in ``ratio``, h = round(sqrt(area * ratio)), w = round(sqrt(area /
    ratio)); the first with h < height and w < width is placed uniformly; none fits: no erasing (as
    torchvision). Static-FER recipes erase after Normalize: DAN (Wen et al. 2023) with scale
    (0.02, 0.25), POSTER V2 (Mao et al. 2023) with p = 1, scale (0.05, 0.05); see
    :data:`ERASING_VALUES` for ``value``.

    Args:
      rng: the generator: one uniform (the coin), then two per attempt, the noise of ``random``, and
        two integers (row, column) for the rectangle that fits.
      height: frame height, pixels (of the model's frames).
      width: frame width, pixels.
      probability: chance of erasing, in [0, 1].
      scale: (low, high) range of the rectangle's area as a fraction of the frame's.
      ratio: (low, high) range of its aspect ratio h / w; both positive.
      value: one of :data:`ERASING_VALUES`.
      attempts: rectangles tried (torchvision: 10).
    Returns:
      The :class:`Erasing`, or None (not drawn, or no rectangle fitted).
    """
    if not rng.random() < probability:
        return None
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if not (h < height and w < width):
            continue
        if value == "random":
            noise = np.asarray(IMAGENET_MEAN) + np.asarray(IMAGENET_STD) * rng.standard_normal((h, w, 3))
            fill = np.clip(np.rint(noise), 0, 255).astype(np.uint8)
        elif value == "zero":
            fill = np.zeros(3, np.uint8)
        elif value == "mean":
            fill = np.rint(np.asarray(IMAGENET_MEAN)).astype(np.uint8)
        else:
            raise ValueError(f"erasing value {value!r} is not one of {', '.join(ERASING_VALUES)}")
        y0 = int(rng.integers(0, height - h + 1))
        x0 = int(rng.integers(0, width - w + 1))
        return Erasing((x0, y0, w, h), fill)
    return None


def _pad_for_box(frames: np.ndarray, box: tuple[int, int, int, int], mode: str
                 ) -> tuple[np.ndarray, int, int]:
    """Frames padded (numpy.pad ``mode``) where ``box`` leaves them, and the box's corner in them."""
    x0, y0, w, h = box
    height, width = frames.shape[1:3]
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = max(0, x0 + w - width), max(0, y0 + h - height)
    if left or top or right or bottom:
        if mode not in PADDING_MODES:
            raise ValueError(f"data.padding_mode = {mode!r} is not one of {', '.join(PADDING_MODES)}")
        frames = np.pad(frames, ((0, 0), (top, bottom), (left, right), (0, 0)), mode=mode)
    return frames, x0 + left, y0 + top


def model_inputs(frames: np.ndarray, points: np.ndarray, spec: ExampleSpec,
                 box: tuple[int, int, int, int] | None = None, flip: bool = False,
                 jitter: Sequence[tuple[str, float]] = (), erasing: Erasing | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Frames (T, S, S, 3) uint8 and key-points (T, 18, 2) -> model frames, key-points, heat-maps.

    ``box`` (x0, y0, w, h) crops every frame before resizing to ``spec.image_size`` (whole frame by
    default; where it leaves the frame, the frame is padded first, ``spec.padding_mode``); ``flip``
    mirrors horizontally; then ``jitter`` changes the colours (:func:`color_jitter`) and ``erasing``
    fills one rectangle. Key-points take the crop and flip (pixel i spans [i, i+1), so a
    crop-and-resize is x' = (x - x0) * size / w), and the heat-maps (T, h, h, 18) float16 are rendered
    from them at ``spec.heatmap_size`` (None when the spec asks for none: nothing is rendered).
    Returns uint8 frames, float32 key-points, float16 heat-maps or None.

    Shrinking uses INTER_AREA (when both sides of the box exceed ``spec.image_size``), otherwise
    INTER_LINEAR; a box already of that size is copied. The flip mirrors x (x -> size - x) and swaps
    left and right indices (``keypoints.flip_keypoints``).

    Args:
      frames: uint8 (T, H, W, 3) RGB frames (S x S face crops from the shards).
      points: (T, 18, 2) key-points (x, y) in pixels of ``frames``; NaN ones give all-zero heat-maps.
      spec: ``image_size``, ``heatmap_size`` and ``heatmap_sigma`` are used.
      box: (x0, y0, w, h) crop in whole pixels, the same for every frame (e.g. from
        ``random_resized_crop``); it may leave the frame (``random_padded_crop``), which is then
        padded. None: the whole frame.
      flip: mirror the frames and key-points horizontally (after the crop).
      jitter: ((name, factor), ...) colour changes (:func:`color_jitter_params`), after the flip.
      erasing: a rectangle to fill in every frame (:func:`random_erasing_params`), last; the
        key-points and heat-maps do not change.
    Returns:
      A tuple (frames, key-points, heat-maps): uint8 (T, size, size, 3), float32 (T, 18, 2) in pixels
      of the output frames, and float16 (T, h, h, 18) Gaussian maps (peak 1, h = ``spec.heatmap_size``
      cells) or None; size = ``spec.image_size``.
    Raises:
      ValueError: ``spec.heatmap_sigma`` <= 0 (with ``spec.heatmap_size`` set); ``box`` leaves the
        frame and ``spec.padding_mode`` is not one of :data:`PADDING_MODES`.
      cv2.error: ``box`` selects no pixel of the frames.
    """
    frames = np.asarray(frames)
    points = np.asarray(points, np.float32)
    height, width = frames.shape[1:3]
    x0, y0, w, h = box if box is not None else (0, 0, width, height)
    frames, cx, cy = _pad_for_box(frames, (x0, y0, w, h), spec.padding_mode)
    size = spec.image_size
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        crop = frame[cy:cy + h, cx:cx + w]
        if crop.shape[:2] == (size, size):
            out[i] = crop
        else:
            interp = cv2.INTER_AREA if w > size and h > size else cv2.INTER_LINEAR
            out[i] = cv2.resize(crop, (size, size), interpolation=interp)
    points = (points - np.array([x0, y0], np.float32)) * np.array([size / w, size / h], np.float32)
    if flip:
        out = np.ascontiguousarray(out[:, :, ::-1])
        points = kp.flip_keypoints(points, size)
    if jitter:
        out = color_jitter(out, jitter)
    if erasing is not None:
        ex, ey, ew, eh = erasing.box
        out[:, ey:ey + eh, ex:ex + ew] = erasing.fill
    if spec.heatmap_size is None:
        return out, points, None
    heatmaps = kp.render_heatmaps(points, (size, size), (spec.heatmap_size, spec.heatmap_size),
                                  spec.heatmap_sigma).astype(np.float16)
    return out, points, heatmaps


def clip_inputs(frames: np.ndarray, points: np.ndarray, spec: ExampleSpec, jpeg_quality: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """A prepared clip's stored frames and key-points -> test-time model inputs, for clips not in a shard.

    The same as ``record_example`` without ``rng`` gives for the clip's record: the segment centres,
    each frame through the shards' JPEG encoding at ``jpeg_quality``, then ``model_inputs``.
    Returns frames, key-points, heat-maps and the stored-frame indices taken.

    Args:
      frames: uint8 (T, S, S, 3) RGB stored frames of a prepared clip (``PreparedClip.frames``).
      points: (T, 18, 2) their key-points (x, y) in crop pixels.
      spec: the example spec (segments, image size, heat-maps).
      jpeg_quality: the JPEG quality the shards were written with (0-100).
    With ``spec.keyframes``, every stored frame goes through the JPEG round trip first and the
    keyframes are chosen on them (:func:`keyframe_indices`), as for the clip's record.

    Returns:
      A tuple (frames, key-points, heat-maps, take): uint8 (N, size, size, 3), float32 (N, 18, 2) in
      pixels of the output frames, float16 (N, h, h, 18) or None, and int32 (N,) stored-frame
      indices, N = ``spec.num_frames`` (with keyframes, ``len(np.unique(take))`` of them were kept
      where there are no more than N).
    Raises:
      ValueError: ``frames`` is empty, a frame fails to JPEG-encode, or ``spec.heatmap_sigma`` <= 0.
      cv2.error: OpenCV rejects a frame (e.g. a channel count other than 1, 3 or 4).
    """
    if spec.keyframes:        # the keyframes are chosen on every stored frame as a shard holds it
        stored = np.stack([records.decode_jpeg(records.encode_jpeg(f, jpeg_quality)) for f in frames])
        take, _ = keyframe_indices(stored, spec, None)
        decoded = stored[take]
    else:
        take = segment_indices(len(frames), spec.num_segments, spec.frames_per_segment, None)
        decoded = np.stack([records.decode_jpeg(records.encode_jpeg(frames[i], jpeg_quality)) for i in take])
    out, kps, heatmaps = model_inputs(decoded, np.asarray(points)[take], spec)
    return out, kps, heatmaps, take


def keyframe_indices(stored: np.ndarray, spec: ExampleSpec, rng: np.random.Generator | None
                     ) -> tuple[np.ndarray, int]:
    """The stored frames one example takes under keyframe selection, and how many keyframes there are.

    The keyframes of ``stored`` (``keyframes.select_keyframes`` with ``spec.keyframes`` and
    ``spec.keyframe_threshold``), then ``clips.segment_indices`` over them: random frames within equal
    segments in training, their centres at test; fewer keyframes than ``spec.num_frames`` are repeated
    evenly, in order.

    Args:
      stored: uint8 (T, S, S, 3) the clip's decoded stored frames (T >= 1).
      spec: the example spec (``keyframes`` set; the segments).
      rng: the example's generator in training; None at test.
    Returns:
      (int32 (N,) stored-frame indices in time order, N = ``spec.num_frames``; the number of keyframes).
    Raises:
      ValueError: no stored frame, or ``spec.keyframes`` is not a measure of ``keyframes.MEASURES``.
    """
    kept = select_keyframes(stored, spec.keyframes, spec.keyframe_threshold)
    return kept[segment_indices(len(kept), spec.num_segments, spec.frames_per_segment, rng)], len(kept)


class LabelError(ValueError):
    """A record whose label is not a class of the model."""


def find_bad_record(source: Any, indices: Sequence[int], spec: ExampleSpec) -> tuple[int, Exception] | None:
    """The first record of ``indices`` that cannot be made into an example, and why.

    Used after the input pipeline failed: it reads ahead in threads or processes, so its error does
    not say which record; reading the same records in the same order finds it.

    Args:
      source: the records (``source[i]`` -> bytes), e.g. a ``records.ShardedDataSource``.
      indices: record indices in the order the pipeline read them; negative ones (padding) are skipped.
      spec: the spec the pipeline used (its ``num_classes`` checks labels).
    Returns:
      (index, the error), or None when all of them read well.
    """
    for index in indices:
        if index < 0:
            continue
        try:
            record_example(source[int(index)], spec, None)
        except Exception as error:  # noqa: BLE001 - any failure of the record is the answer
            return int(index), error
    return None


def record_example(data: bytes | dict[str, Any], spec: ExampleSpec, rng: np.random.Generator | None
                   ) -> dict[str, Any]:
    """One shard record -> one example.

    ``rng`` given = training (random frames and augmentation); see ``record_inputs``. The record's
    version is not checked here.

    Args:
      data: the record's bytes, or the record as :class:`DecodedCache` keeps it.
      spec: the example spec.
      rng: the example's generator in training; None at test (segment centres, no augmentation).
    Returns:
      ``{"frames": uint8 (N, S, S, 3), "heatmaps": float16 (N, h, h, 18) when the spec asks for them,
      "label": int32 scalar, "valid": bool scalar True}``, N = ``spec.num_frames``, S =
      ``spec.image_size``; with ``spec.keyframes`` also ``"keyframes"``: int32 scalar, the number of
      keyframes the clip kept (batch metadata; the model does not read it).
    Raises:
      google.protobuf.message.DecodeError: ``data`` cannot be parsed as an Example.
      ValueError: the record is malformed (``records.decode_example``), has no stored frame, a stored
        frame is not a decodable JPEG, or ``spec.heatmap_sigma`` <= 0.
      KeyError: the record lacks ``frames``, ``keypoints`` or ``label`` (not a clip record).
      LabelError: the label is outside [0, spec.num_classes).
    """
    frames, _, heatmaps, header = record_inputs(data, spec, rng)
    label = int(header["label"])
    if spec.num_classes and not 0 <= label < spec.num_classes:
        raise LabelError(f"label {label} is not one of the {spec.num_classes} classes (0-{spec.num_classes - 1}) "
                         "of model.num_classes")
    example = {"frames": frames, "label": np.int32(label), "valid": np.bool_(True)}
    if heatmaps is not None:
        example["heatmaps"] = heatmaps
    if spec.keyframes:
        example["keyframes"] = np.int32(header["keyframes"])
    return example


def record_inputs(data: bytes | dict[str, Any], spec: ExampleSpec, rng: np.random.Generator | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """One shard record -> model frames, key-points, heat-maps, and the record's other fields.

    ``data`` is the record's bytes, or the record as :class:`DecodedCache` keeps it (parsed, its
    frames decoded); both give the same result.

    Frames are chosen by ``clips.segment_indices`` and only their JPEGs are decoded (with
    ``spec.keyframes``, all are decoded and the segments cut the keyframes, :func:`keyframe_indices`;
    the header then has ``keyframes``, their number). With ``rng`` (training),
    after the random segment offsets, one draw for all frames: with ``spec.crop_padding``, a
    ``random_padded_crop`` window; one ``random_resized_crop`` box (``spec.crop_scale``,
    ``spec.crop_ratio``) within that window (or the frame), the two composed into one box, so the
    frames are resized once; when ``spec.flip``, a horizontal flip with probability 1/2; with a
    non-zero ``spec.color_jitter``, ``color_jitter_params``; with ``spec.random_erasing`` > 0,
    ``random_erasing_params`` on the model's frames. An augmentation that is off draws nothing, so
    the others' draws stay those of a spec without it.

    Args:
      data: the record's bytes, or the decoded record dict of :class:`DecodedCache`.
      spec: the example spec.
      rng: the example's generator in training; None at test (segment centres, no augmentation).
    Returns:
      A tuple (frames, key-points, heat-maps, header): as ``model_inputs`` returns them for N =
      ``spec.num_frames`` frames, and the decoded record dict (its ``frames`` as stored: a list of
      JPEG bytes, or the cache's decoded array).
    Raises:
      google.protobuf.message.DecodeError: ``data`` cannot be parsed as an Example.
      ValueError: the record is malformed (``records.decode_example``), has no stored frame, a stored
        frame is not a decodable JPEG, or ``spec.heatmap_sigma`` <= 0.
      KeyError: the record lacks ``frames`` or ``keypoints`` (not a clip record).
    """
    header = data if isinstance(data, dict) else records.decode_example(data)
    stored = header["frames"]
    if spec.keyframes:                              # every stored frame is decoded to choose among them
        if not isinstance(stored, np.ndarray):
            stored = np.stack([records.decode_jpeg(j) for j in stored])
        take, kept = keyframe_indices(stored, spec, rng)
        header = {**header, "keyframes": kept}      # a new dict: the cache's stays as it is
        frames = stored[take]
    else:
        take = segment_indices(len(stored), spec.num_segments, spec.frames_per_segment, rng)
        if isinstance(stored, np.ndarray):
            frames = stored[take]                   # fancy indexing: a copy, the cache stays intact
        else:
            frames = np.stack([records.decode_jpeg(stored[i]) for i in take])
    points = header["keypoints"][take]
    box, flip, jitter, erasing = None, False, (), None
    if rng is not None:
        height, width = frames.shape[1:3]
        wx, wy = 0, 0                               # the padded crop's window, then a box within it
        if spec.crop_padding:
            wx, wy, _, _ = random_padded_crop(rng, height, width, spec.crop_padding)
        x0, y0, w, h = random_resized_crop(rng, height, width, spec.crop_scale, spec.crop_ratio)
        box = (wx + x0, wy + y0, w, h)
        flip = bool(spec.flip and rng.random() < 0.5)
        if any(s > 0 for s in spec.color_jitter):
            jitter = color_jitter_params(rng, spec.color_jitter)
        if spec.random_erasing > 0:
            erasing = random_erasing_params(rng, spec.image_size, spec.image_size, spec.random_erasing,
                                            spec.erasing_scale, spec.erasing_ratio, spec.erasing_value)
    frames, points, heatmaps = model_inputs(frames, points, spec, box, flip, jitter, erasing)
    return frames, points, heatmaps, header


# --- the data on disk --------------------------------------------------------------------------

# --- training and evaluation datasets ----------------------------------------------------------

def _epoch_seed(seed: int, epoch: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, salt]).generate_state(1)[0])


class _Decode(grain.transforms.Map):
    def __init__(self, spec: ExampleSpec):
        self.spec = spec

    def map(self, data: bytes) -> dict[str, Any]:
        return record_example(data, self.spec, None)


class _DecodeRandom(grain.transforms.RandomMap):
    def __init__(self, spec: ExampleSpec):
        self.spec = spec

    def random_map(self, data: bytes, rng: np.random.Generator) -> dict[str, Any]:
        return record_example(data, self.spec, rng)


class DecodedCache:
    """A record source that keeps each record parsed, with its JPEG frames decoded, after first use.

    Config key ``runtime.cache_decoded``.

    Decoding a record's JPEG frames is most of an example's host cost (1.3 of 2.0 ms for the demo's
    8 frames at 64x64), and it is the same every epoch: only the frame sampling and the augmentation
    after it are random. The cache costs the stored frames' raw size in memory: stored frames x
    size^2 x 3 bytes per clip. The demo's 1,400 training clips of 8 x 64^2 take 138 MB; at the default
    preparation (up to 64 stored frames of 112x112, 2.4 MB a clip) the 9.4k training clips of a DFEW
    fold would take ~23 GB, so it is off by default. It lives in the process that
    reads the records: grain worker processes (``runtime.num_workers`` > 0) start each epoch with an empty
    one, so use it with ``runtime.num_workers = 0``. Safe to share between threads (a record decoded twice
    at once is stored twice, identically).

    ``cache[i]`` returns the record dict of ``records.decode_example`` with ``frames`` a read-only
    uint8 (T, S, S, 3) RGB array; the same dict each time, so callers must not change it. It pickles
    as its source alone.

    Args:
      source: a random-access record source (``len``, ``source[i]`` -> record bytes), e.g. a
        ``records.ShardedDataSource``.
    Attributes:
      source: as given.
    """

    def __init__(self, source: Any):
        self.source = source
        self._records: list[dict[str, Any] | None] = [None] * len(source)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The parsed record ``index``, its frames decoded on first use (see the class docstring).

        Raises:
          IndexError: ``index`` is out of range.
          ValueError: on first use, the record is malformed or a frame is not a decodable JPEG.
          google.protobuf.message.DecodeError: on first use, the record cannot be parsed.
        """
        record = self._records[index]
        if record is None:
            record = records.decode_example(self.source[index])
            record["frames"] = np.stack([records.decode_jpeg(j) for j in record["frames"]])
            record["frames"].flags.writeable = False
            self._records[index] = record
        return record

    def __getstate__(self) -> dict[str, Any]:      # worker processes get the source, not the cache
        return {"source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"])


def _worker_processes(it: grain.IterDataset, num_workers: int) -> grain.IterDataset:
    """grain worker processes (runtime.num_workers) making examples; none for 0.

    Batching happens after, in this process: grain gives each worker a strided share of the examples
    and interleaves their outputs back in order, so batches are the same for any worker count.
    """
    if num_workers <= 0:
        return it
    from absl import flags
    if not flags.FLAGS.is_parsed():          # grain's worker setup reads its absl flags: their defaults
        flags.FLAGS([sys.argv[0] if sys.argv and sys.argv[0] else "dferjax"], known_only=True)
    return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))


def _read_options(num_workers: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=2 if num_workers == 0 else 1, prefetch_buffer_size=4)


class TrainData:
    """Training batches of one process for any epoch, from any position; see the module docstring.

    Each epoch shuffles all records (seeded by ``seed`` and the epoch) and keeps the first
    ``steps_per_epoch * global_batch``: the remainder is left out of that epoch.

    Args:
      source: the training records (``len``, ``source[i]`` -> record bytes).
      spec: how a record becomes an example.
      global_batch: examples per step over all processes (``train.batch_size``).
      seed: seeds the shuffle and every example's random draws.
      process_index: this process's index, in [0, process_count).
      process_count: the number of processes reading.
      num_workers: grain worker processes making examples (0: threads of this process).
      cache: wrap ``source`` in a :class:`DecodedCache`.
    Attributes:
      steps_per_epoch: global batches per epoch, ``len(source) // global_batch``.
      local_batch: this process's examples per step, ``global_batch // process_count``.
    Raises:
      DataConfigError: ``global_batch`` is not divisible by ``process_count``, or larger than the
        number of records.
    """

    def __init__(self, source: records.ShardedDataSource, spec: ExampleSpec, global_batch: int, *, seed: int,
                 process_index: int = 0, process_count: int = 1, num_workers: int = 0, cache: bool = False):
        if global_batch % process_count:
            raise DataConfigError(f"train.batch_size = {global_batch} is not divisible by the "
                                  f"{process_count} processes")
        self.source, self.spec, self.seed = (DecodedCache(source) if cache else source), spec, seed
        self.global_batch, self.local_batch = global_batch, global_batch // process_count
        self.process_index, self.process_count = process_index, process_count
        self.num_workers = num_workers
        self.steps_per_epoch = len(source) // global_batch
        if self.steps_per_epoch == 0:
            raise DataConfigError(f"train.batch_size = {global_batch} is larger than the {len(source)} "
                                  "training clips: lower it")

    def _global(self, epoch: int, source: Any = None) -> grain.MapDataset:
        """The epoch's records (of ``source``, default the shards) in global, shuffled order."""
        source = self.source if source is None else source
        ds = grain.MapDataset.source(source).shuffle(seed=_epoch_seed(self.seed, epoch, 0))
        return ds[: self.steps_per_epoch * self.global_batch]

    def local_positions(self) -> np.ndarray:
        """Global positions this process reads: its contiguous share of every global batch.

        Returns:
          int64 (steps_per_epoch * local_batch,) positions in the epoch's shuffled order: in batch b,
          ``b * global_batch + process_index * local_batch`` onwards, ``local_batch`` of them.
        """
        local = np.arange(self.steps_per_epoch * self.local_batch)
        return ((local // self.local_batch) * self.global_batch + self.process_index * self.local_batch
                + local % self.local_batch)

    def dataset(self, epoch: int, position: int = 0) -> grain.IterDataset:
        """This process's batches of ``epoch`` from batch ``position`` on (dicts of numpy arrays).

        The random draw of an example depends on its global position only, so one process or several,
        and any number of workers, see the same examples with the same augmentation.

        Args:
          epoch: the epoch, 0-based (seeds its shuffle and draws).
          position: batches of the epoch already taken (resumption); 0 starts the epoch.
        Returns:
          A ``grain.IterDataset`` of ``steps_per_epoch - position`` batches, each a dict ``frames``
          uint8 (local_batch, N, S, S, 3), ``heatmaps`` float16 (local_batch, N, h, h, 18) when the
          spec asks for them, ``label`` int32 (local_batch,), ``valid`` bool (local_batch,) all True,
          ``keyframes`` int32 (local_batch,) with ``spec.keyframes``. Errors of a record (see ``record_example``) are raised while iterating.
        """
        examples = self._global(epoch).random_map(_DecodeRandom(self.spec), seed=_epoch_seed(self.seed, epoch, 1))
        positions = self.local_positions()[position * self.local_batch:].tolist()
        ds = grain.MapDataset.source(positions).map(_Take(examples))
        it = _worker_processes(ds.to_iter_dataset(_read_options(self.num_workers)), self.num_workers)
        return it.batch(self.local_batch, drop_remainder=True)

    def order(self, epoch: int) -> np.ndarray:
        """Record indices of this process's examples in ``epoch``, in the order they are read.

        Args:
          epoch: the epoch, 0-based.
        Returns:
          int64 (steps_per_epoch * local_batch,) indices into ``source``.
        """
        ds = self._global(epoch, range(len(self.source)))
        return np.asarray([ds[int(g)] for g in self.local_positions()])


class _Take(grain.transforms.Map):
    """position -> the example at that position of a MapDataset (picklable for worker processes)."""

    def __init__(self, dataset: grain.MapDataset):
        self.dataset = dataset

    def map(self, position: int) -> Any:
        return self.dataset[position]


class EvalData:
    """Every record of the test splits once, in order, padded to whole global batches (``valid`` False).

    Args:
      source: the test records (``len``, ``source[i]`` -> record bytes).
      spec: how a record becomes an example (no augmentation is applied).
      global_batch: examples per step over all processes (``train.eval_batch_size``).
      process_index: this process's index, in [0, process_count).
      process_count: the number of processes reading.
      num_workers: grain worker processes making examples (0: threads of this process).
      cache: wrap ``source`` in a :class:`DecodedCache`.
    Attributes:
      steps: global batches, ``ceil(len(source) / global_batch)``.
      local_batch: this process's examples per step, ``global_batch // process_count``.
    Raises:
      DataConfigError: ``global_batch`` is not divisible by ``process_count``.
    """

    def __init__(self, source: records.ShardedDataSource, spec: ExampleSpec, global_batch: int, *,
                 process_index: int = 0, process_count: int = 1, num_workers: int = 0, cache: bool = False):
        if global_batch % process_count:
            raise DataConfigError(f"train.eval_batch_size = {global_batch} is not divisible by the "
                                  f"{process_count} processes")
        self.source, self.spec = (DecodedCache(source) if cache else source), spec
        self.global_batch, self.local_batch = global_batch, global_batch // process_count
        self.process_index, self.process_count = process_index, process_count
        self.num_workers = num_workers
        self.steps = -(-len(source) // global_batch)

    def indices(self, process_index: int | None = None) -> np.ndarray:
        """The record index of each example a process (this one by default) reads, -1 for padding.

        A process reads every ``process_count``-th position of the padded order, from its own index on.

        Args:
          process_index: the process, in [0, process_count); None for this one.
        Returns:
          int64 (steps * local_batch,) record indices, -1 for padding.
        """
        padded = np.arange(self.steps * self.global_batch)
        padded[padded >= len(self.source)] = -1
        process = self.process_index if process_index is None else process_index
        return padded[process::self.process_count]

    def dataset(self) -> grain.IterDataset:
        """This process's evaluation batches (dicts of numpy arrays), in ``indices()`` order.

        Returns:
          A ``grain.IterDataset`` of ``steps`` batches, each a dict ``frames`` uint8
          (local_batch, N, S, S, 3), ``heatmaps`` float16 (local_batch, N, h, h, 18) when the spec
          asks for them, ``label`` int32 (local_batch,), ``valid`` bool (local_batch,), ``keyframes``
          int32 (local_batch,) with ``spec.keyframes``; padding examples are zeros with label 0 and ``valid`` False. Errors of a record (see
          ``record_example``) are raised while iterating.
        """
        spec, source = self.spec, self.source
        decode = _Decode(spec)
        pad = {"frames": np.zeros((spec.num_frames, spec.image_size, spec.image_size, 3), np.uint8),
               "label": np.int32(0), "valid": np.bool_(False)}
        if spec.heatmap_size is not None:
            pad["heatmaps"] = np.zeros((spec.num_frames, spec.heatmap_size, spec.heatmap_size,
                                        kp.NUM_KEYPOINTS), np.float16)
        if spec.keyframes:
            pad["keyframes"] = np.int32(0)

        def load(index: int) -> dict[str, Any]:
            return decode.map(source[index]) if index >= 0 else dict(pad)

        ds = grain.MapDataset.source(self.indices().tolist()).map(load)
        it = _worker_processes(ds.to_iter_dataset(_read_options(self.num_workers)), self.num_workers)
        return it.batch(self.local_batch, drop_remainder=True)


def prefetch(iterator: Iterator[Any], size: int = 2, transfer: Any = None) -> Iterator[Any]:
    """Run ``iterator`` (and ``transfer`` of each item) in a thread, ``size`` items ahead.

    ``transfer`` is e.g. the copy to the devices; running ahead is so that the accelerator does not
    wait for the host. Errors re-raise here. Closing the generator early stops the thread after its
    current item.

    Args:
      iterator: the items to produce, consumed in a daemon thread.
      size: items produced ahead at most (queue bound; <= 0: unbounded).
      transfer: applied to each item in the thread; None yields items as they are.
    Yields:
      The items of ``iterator`` (through ``transfer``), in order.
    Raises:
      BaseException: whatever ``iterator`` or ``transfer`` raised in the thread, re-raised here after
        the items before it.
    """
    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(transfer(item) if transfer is not None else item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            items.put(error)
            return
        items.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():       # unblock a producer waiting on a full queue
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass
