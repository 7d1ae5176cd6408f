"""Keyframes by redundancy: drop the stored frames that repeat the last kept one (TDRAG's first step).

Liu, Tao, Yang, Wang (2024) "employ redundancy coefficients to select keyframes for reducing the
interference of repetitive information"; only their abstract is public, so the construction here is
our reading, each part a setting:

* **Redundancy coefficient** of a frame against the last kept frame, in [0, 1] for identical frames at 1
  (``measure``, config ``model.<name>.keyframes``), on the grey image (ITU-R 601-2 luma):

  - ``"histogram"``: the Pearson correlation of the two 64-bin grey-level histograms (OpenCV's
    ``HISTCMP_CORREL``), clipped below at 0;
  - ``"mad"``: 1 - mean absolute difference / 255;
  - ``"ssim"``: the mean SSIM (Wang et al. 2004) over 7x7 windows (uniform, as scikit-image's default),
    constants K1 = 0.01, K2 = 0.03 of the range 255, clipped below at 0.

* **Default** (``tdrag``): SSIM, threshold 0.99. Measured on the real clips of ../shared/testdata (64
  stored 112x112 face crops each, after the shards' JPEG round trip): SSIM at 0.99 keeps 64, 64, 64 and
  51 of 64 (it drops the near-duplicates of single_face.mp4, 72 source frames stored as 64), so it removes
  repeated frames and keeps the ones where the face moves; the grey histogram at 0.99 keeps 16-43 of 64,
  also dropping frames where the face moves but its global grey-level histogram hardly changes (a mouth
  opening), and on the synthetic demo clips (8 frames of a smooth expression ramp) it leaves 28% of the
  clips (every 10th of the 1,400 measured) with their neutral first frame alone. Mean absolute
  difference at 0.99 keeps 29-64 of 64.
* **Selection**: the first frame is kept; each later frame is compared with the last KEPT frame and
  dropped when its coefficient is above ``threshold`` (``model.<name>.keyframe_threshold``), so a slow
  drift eventually gives a new keyframe while a held or padded frame never does.
* **Sampling**: the kept frames, in time order, are then sampled to the model's frame count by the
  pipeline's segment sampling (``clips.segment_indices``: random frames within equal segments in
  training, their centres at test). A clip with fewer kept frames than the model takes repeats them
  evenly in order, as the peers (Former-DFER's loader) repeat short clips; the number kept travels with
  the example (``keyframes`` in the batch) and :func:`keyframe_note` says it in words.

Pure NumPy, no model: the input pipeline runs it on a record's decoded stored frames and predict on a
clip's stored frames after the same JPEG round trip, so both choose the same frames.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("histogram", "mad", "ssim")
"""Redundancy measures (``model.<name>.keyframes``; "" turns keyframe selection off)."""
HISTOGRAM_BINS = 64
"""Grey-level histogram bins of the ``histogram`` measure (our reading)."""
SSIM_WINDOW = 7
"""Side of SSIM's uniform window, pixels (scikit-image's default)."""
GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma, RGB -> grey (as ``input_pipeline.GREY_WEIGHTS``)."""


def grey(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames (..., H, W, 3) -> float32 grey frames (..., H, W) in [0, 255]."""
    return np.asarray(frames, np.float32) @ np.asarray(GREY_WEIGHTS, np.float32)


def _histogram(g: np.ndarray) -> np.ndarray:
    h, _ = np.histogram(g, bins=HISTOGRAM_BINS, range=(0.0, 256.0))
    return h.astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if den == 0:                       # a constant histogram (all bins equal): identical or not at all
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.sum(a * b) / den)


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window fully inside x (valid positions), by summed-area table."""
    s = np.pad(np.cumsum(np.cumsum(x, 0), 1), ((1, 0), (1, 0)))
    return (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey images (H, W) in [0, 255] over uniform ``SSIM_WINDOW`` windows (the image's
    side where smaller), with scikit-image's sample covariance (N / (N - 1))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    k = max(1, min(SSIM_WINDOW, *a.shape))
    n = k * k
    cov = n / (n - 1) if n > 1 else 1.0
    ma, mb = _box_mean(a, k), _box_mean(b, k)
    va = cov * (_box_mean(a * a, k) - ma * ma)
    vb = cov * (_box_mean(b * b, k) - mb * mb)
    vab = cov * (_box_mean(a * b, k) - ma * mb)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def redundancy(a: np.ndarray, b: np.ndarray, measure: str) -> float:
    """The redundancy coefficient of two grey frames (H, W) in [0, 255]: 1 for identical frames,
    towards 0 for unrelated ones (see the module docstring).

    Raises:
      ValueError: ``measure`` is not one of :data:`MEASURES`.
    """
    if measure == "histogram":
        return max(0.0, _correlation(_histogram(a), _histogram(b)))
    if measure == "mad":
        return 1.0 - float(np.mean(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)))) / 255.0
    if measure == "ssim":
        return max(0.0, ssim(a, b))
    raise ValueError(f"keyframe measure {measure!r} is not one of {', '.join(MEASURES)} "
                     "(config key model.<name>.keyframes; '' turns keyframes off)")


def select_keyframes(frames: np.ndarray, measure: str, threshold: float) -> np.ndarray:
    """Indices of a clip's keyframes: the first frame, then each frame whose redundancy coefficient
    against the last kept frame is at most ``threshold``.

    Args:
      frames: uint8 (T, H, W, 3) RGB frames (T >= 1), or float (T, H, W) grey frames in [0, 255].
      measure: one of :data:`MEASURES`.
      threshold: a frame is dropped when its coefficient is above it; >= 1 keeps every frame.
    Returns:
      int32 (K,) indices into ``frames``, increasing, K >= 1 (the first frame is always kept).
    Raises:
      ValueError: no frame, or an unknown ``measure``.
    """
    frames = np.asarray(frames)
    if len(frames) < 1:
        raise ValueError("a clip needs at least one frame to choose keyframes from")
    if measure not in MEASURES:
        redundancy(frames[0], frames[0], measure)          # raises, naming the config key
    g = grey(frames) if frames.ndim == 4 else np.asarray(frames, np.float32)
    kept = [0]
    for i in range(1, len(g)):
        if redundancy(g[kept[-1]], g[i], measure) <= threshold:
            kept.append(i)
    return np.asarray(kept, np.int32)


def keyframe_note(num_kept: int, num_stored: int, num_frames: int) -> str:
    """A sentence for a person: how many keyframes a clip kept and whether they were repeated."""
    note = f"keyframes: {num_kept} of {num_stored} stored frames kept as distinct"
    if num_kept < num_frames:
        note += f"; fewer than the model's {num_frames} frames, so they are repeated evenly in order"
    return note
