"""Figures are written as readable, non-trivial PNG files, also from incomplete metrics files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from dferjax import figures as plots
from dferjax.labels import BASIC_CLASSES, MAFW_CLASSES


def _check_png(path, min_bytes=10_000):
    assert path.is_file()
    assert path.stat().st_size > min_bytes
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels.std() > 0.01                                        # not a blank image


@pytest.mark.parametrize("names, normalize", [(BASIC_CLASSES, True), (MAFW_CLASSES, False)])
def test_plot_confusion_writes_png(tmp_path, names, normalize):
    rng = np.random.default_rng(0)
    k = len(names)
    confusion = rng.integers(0, 20, size=(k, k)) + np.eye(k, dtype=int) * 50
    confusion[-1] = 0                                                 # an absent class
    out = plots.plot_confusion(confusion, names, tmp_path / "figs" / "confusion.png",
                               title="test", normalize=normalize)
    assert out == tmp_path / "figs" / "confusion.png"
    _check_png(out)


def test_plot_confusion_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        plots.plot_confusion(np.zeros((3, 3)), BASIC_CLASSES, tmp_path / "c.png")


def _write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")


def test_plot_curves_writes_png(tmp_path):
    records = []
    for epoch in range(1, 6):
        for i in range(10):
            step = (epoch - 1) * 10 + i
            records.append({"kind": "train", "epoch": epoch, "step": step, "loss": 2.0 / (1 + step / 10),
                            "lr": 1e-3 if epoch < 4 else 1e-4, "loss_t": 1.5 / (1 + step / 10),
                            "loss_s": 0.5 / (1 + step / 10)})
        records.append({"kind": "eval", "epoch": epoch, "war": 0.4 + 0.05 * epoch, "uar": 0.3 + 0.04 * epoch,
                        "loss": 1.5 - 0.1 * epoch})
    records.append({"kind": "other", "note": "ignored"})
    records.append({"kind": "train", "epoch": 6})                     # no loss: skipped
    path = tmp_path / "metrics.jsonl"
    _write_jsonl(path, records, extra_lines=['{"kind": "train", "ste'])  # truncated last line
    with pytest.warns(UserWarning, match="metrics.jsonl:"):
        out = plots.plot_curves(path, tmp_path / "out" / "curves.png")
    _check_png(out)


def test_plot_curves_tolerates_missing_kinds(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write_jsonl(path, [{"kind": "train", "loss": 1.0}, {"kind": "train", "loss": 0.8}])  # no step, no eval
    _check_png(plots.plot_curves(path, tmp_path / "curves.png"), min_bytes=5_000)
    path.write_text("")
    _check_png(plots.plot_curves(path, tmp_path / "empty.png"), min_bytes=5_000)


def test_plot_curves_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        plots.plot_curves(tmp_path / "nothere.jsonl", tmp_path / "c.png")


def _heatmap_clips(size=112, cells=7, frames=4, rows=2):
    from dferjax.keypoints import render_heatmaps

    rng = np.random.default_rng(1)
    clips = []
    for r in range(rows):
        points = rng.uniform(10, size - 10, size=(frames, 18, 2)).astype(np.float32)
        clips.append({"frames": rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8),
                      "keypoints": points, "heatmaps": render_heatmaps(points, (size, size), (cells, cells), 1.0),
                      "label": r, "clip_id": f"clip{r}", "predicted": r + 1})
    return clips


def test_upsample_grid_nearest_gives_each_pixel_its_cell():
    """Cell i of an h-cell grid over S pixels covers the pixels [i S / h, (i + 1) S / h)."""
    grid = np.random.default_rng(0).uniform(size=(7, 7))
    up = plots.upsample_grid(grid, (112, 112), "nearest")            # 16 pixels per cell
    assert up.shape == (112, 112)
    rows, cols = np.indices((112, 112))
    np.testing.assert_array_equal(up, grid[rows // 16, cols // 16].astype(np.float32))
    up = plots.upsample_grid(grid, (50, 30), "nearest")              # cells of 50/7 x 30/7 pixels
    edges_y, edges_x = np.arange(8) * 50 / 7, np.arange(8) * 30 / 7
    cell_y = np.searchsorted(edges_y, np.arange(50) + 0.5, side="right") - 1
    cell_x = np.searchsorted(edges_x, np.arange(30) + 0.5, side="right") - 1
    np.testing.assert_array_equal(up, grid[cell_y][:, cell_x].astype(np.float32))


@pytest.mark.parametrize("shape", [(112, 112), (50, 30), (7, 7)])
def test_upsample_grid_bilinear_matches_opencv(shape):
    """Against OpenCV's INTER_LINEAR (half-pixel centres, edges held), an independent implementation."""
    import cv2

    grid = np.random.default_rng(0).uniform(size=(7, 7)).astype(np.float32)
    expected = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(plots.upsample_grid(grid, shape), expected, atol=1e-5)


def test_upsampled_heatmap_peaks_at_its_keypoint():
    from dferjax.keypoints import render_heatmaps

    point = np.array([[40.3, 75.1]], np.float32)                     # in cell (row 4, column 2) of 16 pixels
    points = np.repeat(point, 18, axis=0)
    grid = render_heatmaps(points, (112, 112), (7, 7), 1.0)[..., 0]
    nearest = plots.upsample_grid(grid, (112, 112), "nearest")
    rows, cols = np.nonzero(nearest == nearest.max())
    assert rows.min() == 64 and rows.max() == 79 and cols.min() == 32 and cols.max() == 47
    smooth = plots.upsample_grid(grid, (112, 112), "bilinear")
    y, x = np.unravel_index(np.argmax(smooth), smooth.shape)
    assert abs(x + 0.5 - 40.3) <= 16 and abs(y + 0.5 - 75.1) <= 16


def test_upsample_grid_refuses_bad_arguments():
    with pytest.raises(ValueError, match="'bicubic'"):
        plots.upsample_grid(np.zeros((7, 7)), (112, 112), "bicubic")
    with pytest.raises(ValueError, match="non-empty"):
        plots.upsample_grid(np.zeros((7, 7, 2)), (112, 112))


def test_heatmap_figure_has_a_colour_bar_and_heatmaps_over_the_crop():
    clips = _heatmap_clips(size=112, cells=7, frames=4, rows=2)
    fig = plots.heatmap_overlay_figure(clips, BASIC_CLASSES, frames_per_clip=3)
    try:
        heat = [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "jet"]
        assert len(heat) == 2 * 3
        for im in heat:
            assert tuple(im.get_extent()) == (0, 112, 112, 0)        # the crop's pixels, top row first
            assert im.get_array().shape == (112, 112)                 # one value per crop pixel
            assert im.get_clim() == (0.0, 1.0)
            frame = im.axes.get_images()[0]
            assert tuple(frame.get_extent()) == tuple(im.get_extent())
        first = heat[0].get_array()
        grid = np.asarray(clips[0]["heatmaps"][0], np.float32).max(axis=-1)
        np.testing.assert_allclose(first, plots.upsample_grid(grid, (112, 112)), atol=1e-6)
        bars = [im.colorbar for im in heat if im.colorbar is not None]
        assert len(bars) == 1
        bar = bars[0]
        assert bar.ax in fig.axes and bar.ax not in [im.axes for im in heat]
        assert (bar.norm.vmin, bar.norm.vmax) == (0.0, 1.0)
        assert "heat-map" in bar.ax.get_ylabel()
        ticks = [t.get_text() for t in bar.ax.get_yticklabels()]
        assert ticks[0] and ticks[-1] and float(ticks[0]) == 0.0 and float(ticks[-1]) == 1.0
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_plot_heatmap_overlays_writes_png(tmp_path):
    out = plots.plot_heatmap_overlays(_heatmap_clips(), BASIC_CLASSES, tmp_path / "figs" / "heatmaps.png")
    assert out == tmp_path / "figs" / "heatmaps.png"
    _check_png(out)
