"""`python -m dferjax.summary`: the parameter table and XLA's forward FLOPs against a hand count, the
heat-map overlap and the local vectors' similarity against NumPy."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from dferjax import keypoints, models, summary
from dferjax.data import synthetic_faces
from tests.conftest import tiny_config

DFEW = str(Path(__file__).resolve().parents[1] / "configs" / "dfew.py")


def conv_macs(size: int, cin: int, cout: int, kernel: int, stride: int = 1) -> tuple[int, int]:
    """Multiply-adds of a square convolution with padding kernel // 2, counting only taps that fall
    inside the input (XLA does not count products with the zero padding), and the output size."""
    pad = kernel // 2
    out = (size + 2 * pad - kernel) // stride + 1
    taps = sum(1 for i in range(out) for t in range(kernel) if 0 <= i * stride - pad + t < size)
    return taps * taps * cin * cout, out


def paper_model_flops(frames: int = 16, image: int = 112) -> int:
    """Forward FLOPs (2 x MACs) of the convolutions and matrix products of the paper's model at
    output stride 16; the small rest (pooling, attention gates, GCN, norms) is left out."""
    macs, size = conv_macs(image, 3, 64, 7, 2)
    size = (size + 1) // 2                                    # 3x3 max pool, stride 2
    for cin, cout, stride in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 1)]:
        m, out = conv_macs(size, cin, cout, 3, stride)
        macs += m + 3 * conv_macs(out, cout, cout, 3)[0]
        if stride != 1 or cin != cout:
            macs += conv_macs(size, cin, cout, 1, stride)[0]
        size = out
    macs *= frames
    tokens, dim, heads, dk, mlp = frames + 1, 512, 8, 64, 1024
    macs += 3 * (tokens * dim * 3 * heads * dk + tokens * heads * dk * dim + 2 * tokens * dim * mlp
                 + 2 * heads * tokens * tokens * dk)
    return 2 * macs


def test_summary_of_the_paper_model(capsys):
    assert summary.main(["--config", DFEW]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["params"] == 17_824_762 and isinstance(result["params"], int)
    assert result["params"] == sum(result["components"].values())
    # XLA counts the same products as the hand count, plus a little elementwise work.
    ratio = result["flops_per_sample"] / paper_model_flops()
    assert 1.0 <= ratio < 1.03, ratio
    assert any(line.startswith("backbone") and "11,176,512" in line for line in lines)
    # 7x7 heat-maps, sigma 1 cell: neighbouring key-points' maps are 84% alike on average (issue 21).
    overlap = result["heatmap_overlap"]
    assert (overlap["size"], overlap["sigma"]) == (7, 1.0) and 0.80 < overlap["mean"] < 0.88 < overlap["max"] < 1
    assert any(line.startswith("heat-map overlap, neighbouring key-points at 7x7, sigma 1 cell(s)") for line in lines)
    similar = result["local_similarity"]
    assert set(similar["regions"]) == set(keypoints.REGIONS) and 0 < similar["mean"] <= 1
    assert any(line.startswith("local vectors within a region") for line in lines)


def test_summary_of_the_frame_mean_model_and_an_unknown_name(capsys):
    assert summary.main(["--config", DFEW, "--config.model.name=frame_mean"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # torchvision's resnet18 (11,689,512) without its 1000-way fc (513,000), and a 512 -> 7 classifier.
    assert result["model"] == "frame_mean" and result["params"] == 11_689_512 - 513_000 + 512 * 7 + 7
    assert "heatmap_overlap" not in result                          # it takes no heat-maps
    try:
        summary.main(["--config", DFEW, "--config.model.name=nope"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "known models: dfer, frame_mean" in capsys.readouterr().err


def np_overlap(points, image, side, sigma):
    """Mean and max cosine similarity of the Gaussian maps of adjacent key-points, from scratch."""
    centres = (np.arange(side) + 0.5) / side * image                   # cell centres, in pixels
    gx, gy = np.meshgrid(centres, centres)                            # gx[i, j] = x of cell (row i, col j)
    scale = side / image
    maps = [np.exp(-(((gx - x) * scale) ** 2 + ((gy - y) * scale) ** 2) / (2 * sigma**2)).ravel()
            for x, y in points.astype(np.float64)]
    cosines = [maps[i] @ maps[j] / np.sqrt((maps[i] @ maps[i]) * (maps[j] @ maps[j]))
               for i, j in itertools.combinations(range(18), 2) if keypoints.ADJACENCY[i, j]]
    assert len(cosines) == 25
    return np.mean(cosines), np.max(cosines)


@pytest.mark.parametrize("image, side, sigma", [(112, 7, 1.0), (112, 14, 1.0), (224, 14, 0.5), (48, 3, 2.0)])
def test_heatmap_overlap_matches_numpy(image, side, sigma):
    spec = models.InputSpec(num_frames=16, image_size=image, heatmap_size=side, heatmap_sigma=sigma, num_classes=7)
    got = summary.heatmap_overlap(spec)
    mean, top = np_overlap(summary.canonical_keypoints(image), image, side, sigma)
    assert got["mean"] == pytest.approx(mean, rel=1e-5) and got["max"] == pytest.approx(top, rel=1e-5)
    assert (got["size"], got["sigma"]) == (side, sigma)


def test_canonical_face_lies_in_the_crop_as_the_mean_dlib_shape():
    points = summary.canonical_keypoints(112) / 112
    assert points.shape == (18, 2) and (points > 0.2).all() and (points < 0.8).all()
    # Left brow outer end and eye left of the right ones, brows above the eyes above the mouth.
    assert points[0, 0] < points[5, 0] and points[1, 1] < points[3, 1] < points[12, 1] < points[15, 1]


def test_local_similarity_matches_numpy_on_the_tiny_model():
    config = tiny_config(num_frames=2)
    model = models.build_model(config.model)
    spec = models.input_spec(config.model)
    got = summary.local_similarity(model, spec, num_frames=2)
    frames, landmarks = synthetic_faces.render_clip(0, 0, num_frames=2, size=48)
    maps = keypoints.render_heatmaps(keypoints.keypoints_from_landmarks(landmarks), (48, 48), (3, 3), 1.0)
    local, global_ = (np.asarray(x, np.float64) for x in model.local_vectors(jnp.asarray(frames)[None],
                                                                             jnp.asarray(maps)[None]))
    for name, members in keypoints.REGIONS.items():
        cosines = [a @ b / np.linalg.norm(a) / np.linalg.norm(b)
                   for frame in local for a, b in itertools.combinations(frame[list(members)], 2)]
        assert got["regions"][name] == pytest.approx(np.mean(cosines), rel=1e-4)
    assert got["mean"] == pytest.approx(np.mean(list(got["regions"].values())))
    ratio = np.linalg.norm(local, axis=-1) / np.linalg.norm(global_, axis=-1)[:, None]
    assert got["local_to_global_norm"] == pytest.approx(ratio.mean(), rel=1e-4)
