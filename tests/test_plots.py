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
