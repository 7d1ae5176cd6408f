"""The synthetic demo set as shards: counts, determinism, key-points equal to the drawing's."""

from __future__ import annotations

import json

import numpy as np

from dferjax.data import synthetic, synthetic_faces
from dferjax import keypoints
from dferjax.data import records
from dferjax.data.clips import PrepConfig
from dferjax.data.faces import FaceSource

PREP = PrepConfig(image_size=48, max_frames=8, min_frames=8)


def test_demo_set_shards(tmp_path):
    info = synthetic.make_demo_set(tmp_path / "a", num_train=14, num_test=7, prep=PREP, progress=False)
    assert info["splits"]["train"]["records"] == 14 and info["splits"]["test"]["records"] == 7
    assert set(info["splits"]["train"]["per_class"].values()) == {2}
    synthetic.make_demo_set(tmp_path / "b", num_train=14, num_test=7, prep=PREP, workers=2, progress=False)
    for shard in ("train-00000.tfrecord", "test-00000.tfrecord"):
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()

    lines = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    first = next(x for x in lines if x["clip_id"] == "test_00003")
    rec = records.decode_clip(records.ShardReader(tmp_path / "a" / first["shard"]).read_record(first["record"]))
    assert rec["label"] == 3 and rec["split"] == "test" and (rec["sources"] == FaceSource.DRAWN).all()
    # The stored key-points are the drawing's landmarks taken through keypoints.py.
    label, seed = map(int, first["source"].split(":")[1:])
    frames, landmarks = synthetic_faces.render_clip(label, seed, num_frames=8, size=48)
    np.testing.assert_allclose(rec["keypoints"], keypoints.keypoints_from_landmarks(landmarks), atol=1e-5)
    assert np.abs(rec["frames"].astype(int) - frames).mean() < 4
