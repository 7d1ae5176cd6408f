"""The grain input pipeline: augmentation keeps frames and heat-maps aligned; order, resume, slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dferjax.data import synthetic
from dferjax.data import dataset
from dferjax.data import input_pipeline as ip
from dferjax import keypoints
from dferjax.data import records
from dferjax.data.clips import PrepConfig

PREP = PrepConfig(image_size=48, max_frames=12, min_frames=12)
SPEC = ip.ExampleSpec(image_size=40, num_segments=4, frames_per_segment=2, heatmap_size=5, heatmap_sigma=0.5,
                    crop_scale=(0.3, 1.0))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    synthetic.make_demo_set(out, num_train=21, num_test=9, prep=PREP, progress=False)
    return out


def _dot_frame(size: int, point: np.ndarray) -> np.ndarray:
    """A black frame with a white 3x3 dot centred on the pixel that holds ``point``."""
    frame = np.zeros((size, size, 3), np.uint8)
    x, y = int(point[0]), int(point[1])
    frame[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 255
    return frame


@pytest.mark.parametrize("flip", [False, True])
def test_heatmap_peaks_follow_the_drawn_keypoint(flip):
    """After a random crop (and flip), each heat-map's maximum lies where its key-point is drawn.

    The dot is found in the transformed FRAME (independently of the key-point arithmetic); after a flip
    the dot drawn for key-point i is the mirrored key-point FLIP_PERMUTATION[i].
    """
    rng = np.random.default_rng(0)
    size = 48
    cell = SPEC.image_size / SPEC.heatmap_size
    for trial in range(6):
        points = rng.uniform(14, 34, size=(1, keypoints.NUM_KEYPOINTS, 2)).astype(np.float32)
        box = ip.random_resized_crop(rng, size, size, (0.5, 1.0), SPEC.crop_ratio)
        # Key-points must stay inside the crop for their dot to be visible.
        x0, y0, w, h = box
        inside = ((points[0, :, 0] > x0 + 2) & (points[0, :, 0] < x0 + w - 2)
                  & (points[0, :, 1] > y0 + 2) & (points[0, :, 1] < y0 + h - 2))
        for i in np.flatnonzero(inside):
            frame = _dot_frame(size, points[0, i])[None]
            out, _, maps = ip.model_inputs(frame, points, SPEC, box, flip)
            channel = int(keypoints.FLIP_PERMUTATION[i]) if flip else int(i)
            ys, xs = np.nonzero(out[0, ..., 0] > 128)
            assert len(xs), f"dot of key-point {i} vanished (trial {trial})"
            dot = np.array([xs.mean() + 0.5, ys.mean() + 0.5])       # dot centre, continuous coordinates
            peak = np.unravel_index(np.argmax(maps[0, ..., channel]), maps.shape[1:3])
            lo = np.array([peak[1], peak[0]]) * cell
            # The dot's centre is within its cell, give or take the dot's own pixel rounding.
            assert np.all(dot >= lo - 1.5) and np.all(dot <= lo + cell + 1.5), (trial, i, dot, lo)


def test_model_inputs_without_augmentation_is_a_resize():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(3, 48, 48, 3), dtype=np.uint8)
    points = rng.uniform(0, 48, size=(3, 18, 2)).astype(np.float32)
    spec = ip.ExampleSpec(image_size=48, heatmap_size=3)
    out, pts, maps = ip.model_inputs(frames, points, spec)
    np.testing.assert_array_equal(out, frames)
    np.testing.assert_allclose(pts, points)
    np.testing.assert_allclose(maps, keypoints.render_heatmaps(points, (48, 48), (3, 3), 1.0), atol=1e-3)
    assert maps.dtype == np.float16 and maps.shape == (3, 3, 3, 18)


def test_random_resized_crop_boxes_fit():
    rng = np.random.default_rng(2)
    for _ in range(200):
        x0, y0, w, h = ip.random_resized_crop(rng, 48, 64, (0.08, 1.0), (0.75, 4 / 3))
        assert 0 <= x0 and 0 <= y0 and x0 + w <= 64 and y0 + h <= 48 and w > 0 and h > 0


def test_training_examples_decode_with_segments(shards):
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["train"], "data.train_splits"))
    example = ip.record_example(source[0], SPEC, np.random.default_rng(0))
    assert example["frames"].shape == (8, 40, 40, 3) and example["frames"].dtype == np.uint8
    assert example["heatmaps"].shape == (8, 5, 5, 18)
    test = ip.record_example(source[0], SPEC, None)
    # At test time no augmentation: the frames are the stored segment-centre frames, resized.
    stored = records.decode_clip(source[0])
    from dferjax.data.clips import segment_indices
    take = segment_indices(len(stored["frames"]), 4, 2)
    expected, _, maps = ip.model_inputs(stored["frames"][take], stored["keypoints"][take], SPEC)
    np.testing.assert_array_equal(test["frames"], expected)
    assert int(test["label"]) == stored["label"]


def test_epoch_order_is_a_seeded_permutation_and_resumes(shards):
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["train"], "data.train_splits"))
    data = ip.TrainData(source, SPEC, 4, seed=3)
    assert data.steps_per_epoch == 5
    order0, order1 = data.order(0), data.order(1)
    assert len(set(order0)) == 20 and set(order0) <= set(range(21))
    assert not np.array_equal(order0, order1)
    np.testing.assert_array_equal(order0, ip.TrainData(source, SPEC, 4, seed=3).order(0))
    full = list(data.dataset(1))
    resumed = list(data.dataset(1, position=3))
    assert len(full) == 5 and len(resumed) == 2
    for a, b in zip(full[3:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    labels = np.concatenate([b["label"] for b in full])
    expected = [records.decode_example(source[int(i)])["label"] for i in order1]
    np.testing.assert_array_equal(labels, expected)


def test_processes_read_their_share_of_each_global_batch(shards):
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["train"], "data.train_splits"))
    one = list(ip.TrainData(source, SPEC, 4, seed=0).dataset(0))
    parts = [list(ip.TrainData(source, SPEC, 4, seed=0, process_index=p, process_count=2).dataset(0))
             for p in range(2)]
    for step, batch in enumerate(one):
        for key in batch:
            joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
            np.testing.assert_array_equal(joined, batch[key])


def test_eval_data_covers_every_record_once(shards):
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    data = ip.EvalData(source, SPEC, 4)
    batches = list(data.dataset())
    assert len(batches) == 3
    valid = np.concatenate([b["valid"] for b in batches])
    assert valid.sum() == 9 and not valid[9:].any()
    labels = np.concatenate([b["label"] for b in batches])[:9]
    np.testing.assert_array_equal(labels, [records.decode_example(source[i])["label"] for i in range(9)])
    halves = [ip.EvalData(source, SPEC, 4, process_index=p, process_count=2).indices() for p in range(2)]
    assert sorted(i for h in halves for i in h if i >= 0) == list(range(9))


def test_bad_data_configs_name_the_problem(shards, tmp_path):
    with pytest.raises(dataset.DataConfigError, match="data.dir"):
        dataset.read_info(tmp_path / "nothing")
    info = dataset.read_info(shards)
    with pytest.raises(dataset.DataConfigError, match="fold6"):
        dataset.split_shards(shards, info, ["fold6"], "data.test_splits")
    with pytest.raises(dataset.DataConfigError, match="model.num_classes = 11"):
        dataset.check_classes(info, 11, shards)
    broken = tmp_path / "broken"
    broken.mkdir()
    bad = dict(info, keypoint_definition_version="0")
    (broken / dataset.INFO_FILE).write_text(json.dumps(bad))
    with pytest.raises(dataset.DataConfigError, match="key-point definition"):
        dataset.read_info(broken)
    (broken / dataset.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(dataset.DataConfigError, match="missing"):
        dataset.split_shards(broken, info, ["train"], "data.train_splits")


def test_decoded_cache_gives_the_same_batches_and_decodes_each_record_once(shards, monkeypatch):
    """Two epochs of augmented training batches and the eval batches from the cache equal those
    decoded from the shard bytes; the JPEGs of each record are decoded once; a pickled copy (what a
    grain worker process gets) carries the source, not the cache."""
    import pickle

    info = dataset.read_info(shards)
    train = records.ShardedDataSource(dataset.split_shards(shards, info, ["train"], "data.train_splits"))
    test = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    plain = [list(ip.TrainData(train, SPEC, 4, seed=5).dataset(e)) for e in range(2)]
    plain_eval = list(ip.EvalData(test, SPEC, 4).dataset())

    calls = []
    decode = records.decode_jpeg
    monkeypatch.setattr(records, "decode_jpeg", lambda data: calls.append(1) or decode(data))
    cached = ip.TrainData(train, SPEC, 4, seed=5, cache=True)
    for epoch in range(2):
        for a, b in zip(plain[epoch], cached.dataset(epoch), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    used = set(cached.order(0)) | set(cached.order(1))
    assert len(calls) == len(used) * PREP.max_frames          # once per stored frame of each record read
    cached_eval = list(ip.EvalData(test, SPEC, 4, cache=True).dataset())
    for a, b in zip(plain_eval, cached_eval, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    copy = pickle.loads(pickle.dumps(cached.source))
    assert len(copy) == len(train) and all(r is None for r in copy._records)
    np.testing.assert_array_equal(copy[0]["frames"], cached.source[0]["frames"])


def test_a_model_without_heatmaps_gets_none(shards, monkeypatch):
    """ExampleSpec.heatmap_size None (a model that declares no heat-maps): examples and padding carry no
    heat-maps and nothing is rendered."""
    spec = ip.ExampleSpec(image_size=40, num_segments=4, frames_per_segment=2, heatmap_size=None)
    monkeypatch.setattr(keypoints, "render_heatmaps", lambda *a, **k: pytest.fail("rendered heat-maps"))
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    example = ip.record_example(source[0], spec, np.random.default_rng(0))
    assert set(example) == {"frames", "label", "valid"} and example["frames"].shape == (8, 40, 40, 3)
    batches = list(ip.EvalData(source, spec, 4).dataset())
    assert all(set(b) == {"frames", "label", "valid"} for b in batches) and not batches[-1]["valid"].all()


def test_version_1_shards_are_refused_with_what_to_do(shards, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    info = json.loads((shards / dataset.INFO_FILE).read_text())
    (old / dataset.INFO_FILE).write_text(json.dumps({**info, "clip_record_version": 1}))
    with pytest.raises(dataset.DataConfigError, match="version 1 is not 2.*delete the folder and run the demo"):
        dataset.read_info(old)
    (old / dataset.INFO_FILE).write_text(json.dumps({**info, "clip_record_version": 1, "dataset": "dfew"}))
    with pytest.raises(dataset.DataConfigError, match="version 1 is not 2.*data_prep.build"):
        dataset.read_info(old)
