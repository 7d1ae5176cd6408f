"""The static-FER augmentations of the input pipeline (random crop with padding, colour jitter, random
erasing), each against an independent NumPy computation: numpy.pad windows, torchvision's colour
formulas written out here (and colorsys for the hue), the erased rectangle found in the frames."""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np
import pytest

from dferjax import keypoints
from dferjax.data import dataset, records, synthetic
from dferjax.data import input_pipeline as ip
from dferjax.data.clips import PrepConfig, segment_indices

S = 16                                      # stored frame side of the hand-made records
OFF = dict(crop_scale=(1.0, 1.0), flip=False, heatmap_size=4)   # the random resized crop keeps the frame
STILL = ip.ExampleSpec(image_size=S, num_segments=1, frames_per_segment=1, **OFF)


def _coordinate_frame(size: int = S) -> np.ndarray:
    """A frame whose pixel (y, x) holds R = 10 + 10x, G = 10 + 10y, B = 250: no zero, each pixel unique."""
    y, x = np.mgrid[:size, :size]
    return np.stack([10 + 10 * x, 10 + 10 * y, np.full_like(x, 250)], axis=-1).astype(np.uint8)


def _record(frames: np.ndarray, points: np.ndarray | None = None) -> dict:
    """A record as the decoded cache keeps it (frames decoded), T frames."""
    if points is None:
        points = np.full((len(frames), keypoints.NUM_KEYPOINTS, 2), S / 2, np.float32)
    return {"frames": frames, "keypoints": np.asarray(points, np.float32), "label": 0}


# --- random crop with padding -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "symmetric"])
def test_padded_crop_is_a_window_of_the_padded_frame_and_keypoints_follow(mode):
    """Each output is the S x S window of np.pad(frame, p, mode) at offsets in [-p, p] (read from the
    frame's coordinate code at the window centre, which never leaves the frame); every offset occurs;
    a key-point on a pixel's centre stays on that pixel."""
    p = 4
    spec = dataclasses.replace(STILL, crop_padding=p, padding_mode=mode)
    frame = _coordinate_frame()
    padded = np.pad(frame, ((p, p), (p, p), (0, 0)), mode=mode)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, S, size=(keypoints.NUM_KEYPOINTS, 2))
    points = (pixels + 0.5).astype(np.float32)[None]
    seen = set()
    for seed in range(120):
        out, kps, _, _ = ip.record_inputs(_record(frame[None], points), spec, np.random.default_rng(seed))
        centre = out[0, S // 2, S // 2]
        x0, y0 = (int(centre[0]) - 10) // 10 - S // 2, (int(centre[1]) - 10) // 10 - S // 2
        assert -p <= x0 <= p and -p <= y0 <= p
        seen.add((x0, y0))
        np.testing.assert_array_equal(out[0], padded[p + y0:p + y0 + S, p + x0:p + x0 + S])
        np.testing.assert_allclose(kps[0], points[0] - [x0, y0])
        for (px, py), (kx, ky) in zip(pixels, kps[0]):
            if 0 <= kx < S and 0 <= ky < S:          # the key-point is in view: on its own pixel
                code = out[0, int(ky), int(kx)]
                assert (code[0] - 10) // 10 == px and (code[1] - 10) // 10 == py
    assert {x for x, _ in seen} == set(range(-p, p + 1)) == {y for _, y in seen}


def test_padded_crop_then_random_resized_crop_is_one_box_within_the_window():
    """With both, the random resized crop's box lies inside the padded crop's window (it may leave the
    frame by up to p), and the frames are that box of np.pad(frame), resized once with the pipeline's
    interpolation rule. The box is read from two key-points (the crop-and-resize is affine)."""
    p, size = 3, 24
    spec = dataclasses.replace(STILL, image_size=size, crop_padding=p, crop_scale=(0.3, 0.9))
    frame = np.random.default_rng(1).integers(1, 256, size=(S, S, 3), dtype=np.uint8)
    padded = np.pad(frame, ((p, p), (p, p), (0, 0)))
    points = np.zeros((1, keypoints.NUM_KEYPOINTS, 2), np.float32)
    points[0, 1] = (S, S)
    outside = 0
    for seed in range(40):
        out, kps, _, _ = ip.record_inputs(_record(frame[None], points), spec, np.random.default_rng(seed))
        (ax, ay), (bx, by) = kps[0, 0], kps[0, 1]        # x' = (x - x0) * size / w
        w, h = S * size / (bx - ax), S * size / (by - ay)
        x0, y0 = -ax * w / size, -ay * h / size
        x0, y0, w, h = (int(round(v)) for v in (x0, y0, w, h))
        assert -p <= x0 and x0 + w <= S + p and -p <= y0 and y0 + h <= S + p, (x0, y0, w, h)
        outside += x0 < 0 or y0 < 0 or x0 + w > S or y0 + h > S
        crop = padded[p + y0:p + y0 + h, p + x0:p + x0 + w]
        interp = cv2.INTER_AREA if w > size and h > size else cv2.INTER_LINEAR
        np.testing.assert_array_equal(out[0], cv2.resize(crop, (size, size), interpolation=interp))
    assert outside > 0


# --- colour jitter ----------------------------------------------------------------------------

def _grey(x):
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _reference_jitter(frames: np.ndarray, params) -> np.ndarray:
    """torchvision's definitions in float64: brightness = blend with black, contrast = blend with the
    frame's mean grey, saturation = blend with the grey image, hue = shift in HSV (colorsys)."""
    x = frames.astype(np.float64)
    for name, f in params:
        if name == "brightness":
            x = f * x
        elif name == "contrast":
            x = f * x + (1 - f) * _grey(x).mean(axis=(-2, -1))[..., None, None, None]
        elif name == "saturation":
            x = f * x + (1 - f) * _grey(x)[..., None]
        else:
            flat = x.reshape(-1, 3) / 255
            for i, (r, g, b) in enumerate(flat):
                hh, ss, vv = colorsys.rgb_to_hsv(r, g, b)
                flat[i] = colorsys.hsv_to_rgb((hh + f) % 1.0, ss, vv)
            x = flat.reshape(x.shape) * 255
        x = np.clip(x, 0, 255)
    return np.rint(x)


@pytest.mark.parametrize("params", [
    (("brightness", 1.37),), (("brightness", 0.41),), (("contrast", 1.6),), (("contrast", 0.3),),
    (("saturation", 1.8),), (("saturation", 0.0),), (("hue", 0.23),), (("hue", -0.41),),
    (("hue", 0.1), ("contrast", 0.7), ("brightness", 1.2), ("saturation", 1.4)),
])
def test_color_jitter_matches_torchvision_formulas(params):
    frames = np.random.default_rng(2).integers(0, 256, size=(2, 5, 6, 3), dtype=np.uint8)
    out = ip.color_jitter(frames, params)
    expected = _reference_jitter(frames, params)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    assert np.abs(out.astype(int) - expected).max() <= 1        # float32 vs float64 at a .5
    assert np.mean(out == expected) > 0.97


@pytest.mark.parametrize("part", [0, 1, 2])
def test_jitter_factors_are_drawn_in_torchvision_ranges(part):
    """Only one part on (strength 0.5): the factor, recovered from the frames by least squares,
    reproduces the output through the reference formula, lies in [0.5, 1.5], and spreads over it."""
    name = ip.JITTER_NAMES[part]
    strengths = [0.0] * 4
    strengths[part] = 0.5
    spec = dataclasses.replace(STILL, color_jitter=tuple(strengths))
    frame = np.random.default_rng(3).integers(40, 200, size=(1, S, S, 3), dtype=np.uint8)
    x = frame.astype(np.float64)
    base = {0: np.zeros_like(x), 1: np.broadcast_to(_grey(x).mean(), x.shape),
            2: np.broadcast_to(_grey(x)[..., None], x.shape)}[part]
    factors = []
    for seed in range(60):
        out, _, _, _ = ip.record_inputs(_record(frame), spec, np.random.default_rng(seed))
        d, y = (x - base).ravel(), (out.astype(np.float64) - base).ravel()     # out = base + f (x - base)
        keep = (out.ravel() > 0) & (out.ravel() < 255)                       # not clipped
        f = float(d[keep] @ y[keep] / (d[keep] @ d[keep]))
        assert 0.5 - 0.01 <= f <= 1.5 + 0.01
        assert np.abs(out - _reference_jitter(frame, ((name, f),))).max() <= 1
        factors.append(f)
    assert min(factors) < 0.7 and max(factors) > 1.3


def test_jitter_params_random_order_and_hue_range():
    rng = np.random.default_rng(4)
    orders, hues = set(), []
    for _ in range(300):
        params = ip.color_jitter_params(rng, (0.4, 0.4, 0.0, 0.1))
        assert sorted(n for n, _ in params) == ["brightness", "contrast", "hue"]   # saturation 0: left out
        orders.add(tuple(n for n, _ in params))
        values = dict(params)
        assert 0.6 <= values["brightness"] <= 1.4 and 0.6 <= values["contrast"] <= 1.4
        hues.append(values["hue"])
    assert len(orders) == 6                                                    # every order of the three
    assert -0.1 <= min(hues) < -0.08 and 0.08 < max(hues) <= 0.1
    assert ip.color_jitter_params(rng, (0.0, 0.0, 0.0, 0.0)) == ()
    assert dict(ip.color_jitter_params(rng, (1.5, 0, 0, 0)))["brightness"] >= 0  # max(0, 1 - b)


# --- random erasing ---------------------------------------------------------------------------

def test_random_erasing_fills_one_rectangle_the_same_in_every_frame():
    """Probability 1, value zero: on frames without a zero pixel, the changed pixels are one filled
    rectangle, the same in all three frames, of area fraction within erasing_scale (with the rounding
    of h and w), h and w below the frame's; key-points and heat-maps are those of the unerased frames."""
    size, scale = 20, (0.05, 0.3)
    spec = ip.ExampleSpec(image_size=size, num_segments=3, frames_per_segment=1, random_erasing=1.0,
                          erasing_scale=scale, erasing_value="zero", **OFF)
    frames = np.random.default_rng(5).integers(1, 256, size=(3, size, size, 3), dtype=np.uint8)
    points = np.random.default_rng(6).uniform(0, size, size=(3, keypoints.NUM_KEYPOINTS, 2))
    clean = ip.record_inputs(_record(frames, points), dataclasses.replace(spec, random_erasing=0.0), None)
    fractions = []
    for seed in range(50):
        out, kps, maps, _ = ip.record_inputs(_record(frames, points), spec, np.random.default_rng(seed))
        changed = np.any(out != frames, axis=-1)                               # (3, size, size)
        assert (changed == changed[0]).all()
        ys, xs = np.nonzero(changed[0])
        if len(ys) == 0:                                                       # no rectangle fitted
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        h, w = y1 - y0, x1 - x0
        assert changed[0, y0:y1, x0:x1].all() and changed[0].sum() == h * w
        assert (out[:, y0:y1, x0:x1] == 0).all()
        assert h < size and w < size
        area = size * size
        assert scale[0] * area - (h + w) / 2 - 1 <= h * w <= scale[1] * area + (h + w) / 2 + 1
        fractions.append(h * w / area)
        np.testing.assert_array_equal(kps, clean[1])
        np.testing.assert_array_equal(maps, clean[2])
    assert len(fractions) >= 45 and min(fractions) < 0.12 and max(fractions) > 0.2


@pytest.mark.parametrize("value", ["mean", "random"])
def test_erasing_values(value):
    """mean: the ImageNet mean colour (what torchvision's 0 is after Normalize); random: noise of that
    mean and standard deviation, in pixels."""
    rng = np.random.default_rng(7)
    erasing = None
    while erasing is None:
        erasing = ip.random_erasing_params(rng, 40, 40, 1.0, (0.2, 0.3), (0.5, 2.0), value)
    mean = np.array([0.485, 0.456, 0.406]) * 255
    if value == "mean":
        np.testing.assert_array_equal(erasing.fill, [124, 116, 104])
    else:
        _, _, w, h = erasing.box
        assert erasing.fill.shape == (h, w, 3) and erasing.fill.dtype == np.uint8
        assert np.all(np.abs(erasing.fill.reshape(-1, 3).mean(0) - mean) < 12)
        assert np.all(np.abs(erasing.fill.reshape(-1, 3).std(0) - np.array([0.229, 0.224, 0.225]) * 255) < 10)


def test_erasing_probability():
    rng = np.random.default_rng(8)
    drawn = [ip.random_erasing_params(rng, 30, 30, 0.5, (0.02, 0.33), (0.3, 3.3), "zero") is not None
             for _ in range(400)]
    assert 0.4 < np.mean(drawn) < 0.6


# --- all of them together ---------------------------------------------------------------------

ALL = dict(crop_padding=3, padding_mode="reflect", crop_scale=(0.5, 1.0), flip=True,
           color_jitter=(0.4, 0.4, 0.4, 0.1), random_erasing=1.0, erasing_value="random")


def test_every_frame_of_a_clip_gets_the_same_augmentation():
    """Four identical stored frames with identical key-points: every augmentation on, the four model
    frames and heat-maps stay identical to each other (and differ from the plain resize)."""
    spec = ip.ExampleSpec(image_size=S, num_segments=4, frames_per_segment=1, heatmap_size=4, **ALL)
    frame = np.random.default_rng(9).integers(0, 256, size=(S, S, 3), dtype=np.uint8)
    points = np.random.default_rng(10).uniform(2, S - 2, size=(keypoints.NUM_KEYPOINTS, 2))
    record = _record(np.stack([frame] * 4), np.stack([points] * 4))
    plain = ip.record_inputs(record, spec, None)[0]
    for seed in range(10):
        out, kps, maps, _ = ip.record_inputs(record, spec, np.random.default_rng(seed))
        assert (out == out[0]).all() and (kps == kps[0]).all() and (maps == maps[0]).all()
        assert not np.array_equal(out, plain)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    synthetic.make_demo_set(out, num_train=8, num_test=7, prep=PrepConfig(image_size=48, max_frames=8, min_frames=8),
                            progress=False)
    info = dataset.read_info(out)
    return {split: records.ShardedDataSource(dataset.split_shards(out, info, [split], f"data.{split}_splits"))
            for split in ("train", "test")}


BASE = ip.ExampleSpec(image_size=40, num_segments=4, frames_per_segment=2, heatmap_size=5, heatmap_sigma=0.5,
                      crop_scale=(0.3, 1.0))


def _batches(data) -> list[dict]:
    return list(data)


def _assert_same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_defaults_off_leave_the_pipeline_as_before(shards):
    """The new keys off draw nothing: an example is exactly the composition the pipeline had before
    them (segment offsets, the random resized crop, the flip coin, model_inputs), whatever the
    other new keys (padding mode, erasing ranges and value) say."""
    train = shards["train"]
    quiet = dataclasses.replace(BASE, padding_mode="reflect", erasing_scale=(0.1, 0.2), erasing_ratio=(1.0, 1.0),
                                erasing_value="random")
    for index in range(4):
        header = records.decode_clip(train[index])
        for seed in range(3):
            rng = np.random.default_rng(seed)
            take = segment_indices(len(header["frames"]), 4, 2, rng)
            frames = np.asarray(header["frames"])[take]
            box = ip.random_resized_crop(rng, 48, 48, BASE.crop_scale, BASE.crop_ratio)
            flip = bool(rng.random() < 0.5)
            expected = ip.model_inputs(frames, header["keypoints"][take], BASE, box, flip)
            for spec in (BASE, quiet):
                got = ip.record_example(train[index], spec, np.random.default_rng(seed))
                np.testing.assert_array_equal(got["frames"], expected[0])
                np.testing.assert_array_equal(got["heatmaps"], expected[2])
    _assert_same(_batches(ip.TrainData(train, BASE, 4, seed=2).dataset(0)),
                 _batches(ip.TrainData(train, quiet, 4, seed=2).dataset(0)))


def test_augmented_batches_depend_only_on_seed_epoch_position(shards):
    spec = dataclasses.replace(BASE, **ALL)
    train = shards["train"]
    first = _batches(ip.TrainData(train, spec, 4, seed=3).dataset(0))
    _assert_same(first, _batches(ip.TrainData(train, spec, 4, seed=3).dataset(0)))
    _assert_same(first, _batches(ip.TrainData(train, spec, 4, seed=3, cache=True).dataset(0)))
    _assert_same(first[1:], _batches(ip.TrainData(train, spec, 4, seed=3).dataset(0, position=1)))
    plain = _batches(ip.TrainData(train, BASE, 4, seed=3).dataset(0))
    assert not np.array_equal(first[0]["frames"], plain[0]["frames"])
    other = _batches(ip.TrainData(train, spec, 4, seed=3).dataset(1))
    assert not np.array_equal(first[0]["frames"], other[0]["frames"])


def test_evaluation_and_predict_stay_unaugmented(shards):
    spec = dataclasses.replace(BASE, **ALL)
    _assert_same(_batches(ip.EvalData(shards["test"], BASE, 4).dataset()),
                 _batches(ip.EvalData(shards["test"], spec, 4).dataset()))
    frames = np.random.default_rng(11).integers(0, 256, size=(8, 48, 48, 3), dtype=np.uint8)
    points = np.random.default_rng(12).uniform(0, 48, size=(8, keypoints.NUM_KEYPOINTS, 2))
    for a, b in zip(ip.clip_inputs(frames, points, BASE, 90), ip.clip_inputs(frames, points, spec, 90)):
        np.testing.assert_array_equal(a, b)


# --- config -----------------------------------------------------------------------------------

def _config(**data):
    from dferjax import models
    from dferjax.config import base_config
    config = base_config(models.default_config())
    for key, value in data.items():
        config.data[key] = value
    return config


@pytest.mark.parametrize("key, value", [
    ("crop_padding", -1), ("padding_mode", "wrap"), ("color_jitter", (0.1, -0.2, 0.0, 0.0)),
    ("color_jitter", (0.0, 0.0, 0.0, 0.6)), ("color_jitter", (0.1, 0.1, 0.1)), ("random_erasing", 1.5),
    ("random_erasing", -0.1), ("erasing_scale", (0.3, 0.1)), ("erasing_scale", (0.0, 0.3)),
    ("erasing_ratio", (0.0, 3.3)), ("erasing_value", "noise"),
])
def test_check_values_refuses_impossible_augmentation_values(key, value):
    from dferjax.config import check_values
    with pytest.raises(ValueError, match=f"data.{key} = ") as error:
        check_values(_config(**{key: value}))
    assert "\n" not in str(error.value)


def test_config_keys_reach_the_example_spec():
    from dferjax.config import check_values
    from dferjax.engine.inputs import example_spec
    for mode in ip.PADDING_MODES:                     # the config offers the data layer's choices
        for value in ip.ERASING_VALUES:
            check_values(_config(padding_mode=mode, erasing_value=value))
    default = example_spec(_config())
    assert (default.crop_padding, default.color_jitter, default.random_erasing) == (0, (0.0,) * 4, 0.0)
    on = dict(crop_padding=4, padding_mode="edge", color_jitter=(0.4, 0.4, 0.4, 0.1), random_erasing=0.5,
              erasing_scale=(0.02, 0.25), erasing_ratio=(0.5, 2.0), erasing_value="zero")
    config = _config(**on)
    check_values(config)
    spec = example_spec(config)
    assert {k: getattr(spec, k) for k in on} == on


def test_a_run_config_made_before_these_keys_gets_them_off():
    """predict and evaluate build the spec from a run's saved config.json: without the new keys it is
    the spec of today's defaults (everything off)."""
    import json

    import ml_collections

    from dferjax.engine import checkpoints as ckpt
    from dferjax.engine.inputs import example_spec
    values = ckpt.config_to_dict(_config())
    for key in ("crop_padding", "padding_mode", "color_jitter", "random_erasing", "erasing_scale", "erasing_ratio",
                "erasing_value"):
        del values["data"][key]
    old = ml_collections.ConfigDict(ckpt._tuples(json.loads(json.dumps(values))))
    assert example_spec(old) == example_spec(_config())
