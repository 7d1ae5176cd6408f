"""figures.probability_timeline: the drawn data against the inputs (line data, polygons, pixels)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib import image as mpimg

from dferjax import figures
from dferjax.labels import BASIC_CLASSES, MAFW_CLASSES

K = len(BASIC_CLASSES)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def _spans(count, length=1.0, stride=1.0, start=0.0):
    starts = start + np.arange(count) * stride
    return np.stack([starts, starts + length], axis=1)


def _halves(count=10, first=0, second=1):
    """Class ``first`` has probability 1 in the first half of the windows, ``second`` in the second."""
    probs = np.zeros((count, K))
    probs[: count // 2, first] = 1.0
    probs[count // 2:, second] = 1.0
    return probs


def _softmax(count, classes=K, seed=0):
    logits = np.random.default_rng(seed).normal(size=(count, classes)) * 2
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_ylabel() == "probability"]


def _value_at(line, t):
    """The height of a step line's horizontal segment over time t (None where it draws nothing)."""
    xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    for j in range(len(xs) - 1):
        if xs[j] < t < xs[j + 1] and ys[j] == ys[j + 1]:
            return ys[j]
    return None


def _pixel(fig, ax, t, y):
    """RGB (0-1) of the rendered figure at data point (t, y) of ``ax``."""
    fig.canvas.draw()
    buffer = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((t, y))
    return buffer[buffer.shape[0] - 1 - int(np.floor(py)), int(np.floor(px)), :3] / 255.0   # pixel row 0 on top


def _rgb(colour):
    return np.asarray(mcolors.to_rgb(colour))


def test_timeline_png_has_its_size_and_svg_pdf_by_suffix(tmp_path):
    spans, probs = _spans(10), _softmax(10)
    out = figures.probability_timeline(spans, probs, BASIC_CLASSES, tmp_path / "t" / "timeline.png", title="clip")
    assert out == tmp_path / "t" / "timeline.png"
    pixels = mpimg.imread(out)
    assert pixels.shape[1] == 1200                                   # readable at 1200 px wide
    assert pixels.shape[0] == round(figures.DPI * (0.9 + figures.TIMELINE_PANEL_IN))
    assert pixels[..., :3].std() > 0.01
    two = figures.probability_timeline([spans, spans[:5]], [probs, probs[:5]], BASIC_CLASSES, tmp_path / "two.png",
                                       track_labels=["face 1", "face 2"])
    assert mpimg.imread(two).shape[:2] == (round(figures.DPI * (0.9 + 2 * figures.TIMELINE_PANEL_IN)), 1200)
    assert figures.probability_timeline(spans, probs, BASIC_CLASSES, tmp_path / "t.svg").read_text().find("<svg") >= 0
    assert figures.probability_timeline(spans, probs, BASIC_CLASSES, tmp_path / "t.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="timeline.gif"):
        figures.probability_timeline(spans, probs, BASIC_CLASSES, tmp_path / "timeline.gif")


@pytest.mark.usefixtures("close_figures")
def test_lines_hold_each_windows_probability_over_its_span():
    spans, probs = _spans(10), _halves(10, first=0, second=3)
    fig = figures.timeline_figure(spans, probs, BASIC_CLASSES, title="clip.mp4")
    (ax,) = _data_axes(fig)
    lines = {line.get_label(): line for line in ax.get_lines() if line.get_label() in BASIC_CLASSES}
    assert list(lines) == list(BASIC_CLASSES)
    for k, name in enumerate(BASIC_CLASSES):
        assert mcolors.same_color(lines[name].get_color(), figures.class_colour(k))
        for i, (start, end) in enumerate(spans):
            for t in (start + 0.1, (start + end) / 2, end - 0.1):    # the whole span, windows not overlapping
                assert _value_at(lines[name], t) == probs[i, k]
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "probability"
    assert ax.get_ylim()[0] <= 0.0 and ax.get_ylim()[1] >= 1.0
    assert fig.get_suptitle() == "clip.mp4"
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == list(BASIC_CLASSES)                              # no "no face": every window has one


@pytest.mark.usefixtures("close_figures")
@pytest.mark.parametrize("kind", ["lines", "area"])
def test_pixels_show_the_class_colours_and_no_face_grey(kind):
    """Rendered with Agg: class 0 at 1 in the first half, class 3 in the second, window 7 without a face."""
    spans, probs = _spans(10), _halves(10, first=0, second=3)
    probs[7] = np.nan
    fig = figures.timeline_figure(spans, probs, BASIC_CLASSES, kind=kind)
    (ax,) = _data_axes(fig)
    y = 1.0 if kind == "lines" else 0.6                               # on the line at 1 / inside the area
    for t in (1.3, 3.7):
        np.testing.assert_allclose(_pixel(fig, ax, t, y), _rgb(figures.class_colour(0)), atol=0.02)
    for t in (5.3, 8.7):
        np.testing.assert_allclose(_pixel(fig, ax, t, y), _rgb(figures.class_colour(3)), atol=0.02)
    grey = _pixel(fig, ax, 7.3, 0.6)
    assert np.ptp(grey) < 0.02 and 0.55 < grey.mean() < 0.92          # grey, neither white nor black
    if kind == "lines":
        np.testing.assert_allclose(_pixel(fig, ax, 6.3, 0.6), 1.0, atol=0.02)   # no shading with a face
    assert "no face" in [text.get_text() for text in fig.legends[0].get_texts()]
    shaded = [p for p in ax.patches if mcolors.same_color(p.get_facecolor()[:3], figures.NO_FACE_COLOUR)]
    assert len(shaded) == 1
    x0, x1 = shaded[0].get_x(), shaded[0].get_x() + shaded[0].get_width()
    assert (x0, x1) == (7.0, 8.0)


def _polygons(ax, name):
    collection = next(c for c in ax.collections if c.get_label() == name)
    return collection.get_paths()


def _inside(paths, point):
    return any(path.contains_point(point) for path in paths)


@pytest.mark.usefixtures("close_figures")
def test_area_stacks_to_one_per_window():
    spans, probs = _spans(12, length=2.0, stride=1.0), _softmax(12)   # overlapping windows
    probs[4] = np.nan
    fig = figures.timeline_figure(spans, probs, BASIC_CLASSES, kind="area")
    (ax,) = _data_axes(fig)
    assert ax.get_ylim() == (0.0, 1.0)
    paths = [_polygons(ax, name) for name in BASIC_CLASSES]
    tops = np.cumsum(probs, axis=1)
    for i, (start, end) in enumerate(spans):
        t = (start + end) / 2                                         # the window's centre
        if i == 4:
            assert not any(_inside(p, (t, 0.5)) for p in paths)       # no face: nothing stacked
            continue
        for k in range(K):
            assert _inside(paths[k], (t, tops[i, k] - probs[i, k] / 2)), (i, k)
        assert _inside(paths[-1], (t, 1.0 - 1e-6))                     # the top boundary is 1
        assert not any(_inside(p, (t, 1.0 + 1e-4)) for p in paths)
    vertices = np.concatenate([path.vertices for p in paths for path in p])
    assert np.isclose(vertices[:, 1].max(), 1.0, atol=1e-9)


@pytest.mark.usefixtures("close_figures")
def test_tracks_share_the_time_axis_one_panel_each():
    spans = _spans(8, length=2.0, stride=1.0)
    probs_a, probs_b = _softmax(8, seed=1), _softmax(5, seed=2)
    valid_b = np.array([True, False, True, True, True])
    fig = figures.timeline_figure([spans, spans[:5] + 3.0], [probs_a, probs_b], BASIC_CLASSES,
                                  valid=[None, valid_b], track_labels=["face 1", "face 2"], title="video.mp4")
    top, bottom = _data_axes(fig)
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_title(loc="left").startswith("face 1") and bottom.get_title(loc="left").startswith("face 2")
    assert "overlapping" in top.get_title(loc="left")
    assert bottom.get_xlabel() == "time (s)"
    assert top.get_xlim() == (0.0, 9.0)
    line = next(line for line in bottom.get_lines() if line.get_label() == "sad")
    assert _value_at(line, 4.0) == probs_b[0, 1]                      # centre of [3, 5)
    assert _value_at(line, 5.0) is None                               # window 1 has no face
    assert "no face" in [text.get_text() for text in fig.legends[0].get_texts()]


@pytest.mark.usefixtures("close_figures")
def test_centre_times_and_absent_rows():
    centres = np.arange(6) * 0.5 + 0.25
    rows = [p for p in _softmax(6)]
    rows[2] = None
    fig = figures.timeline_figure(centres, rows, BASIC_CLASSES)
    (ax,) = _data_axes(fig)
    line = next(line for line in ax.get_lines() if line.get_label() == "happy")
    assert _value_at(line, 0.3) == rows[0][0] and _value_at(line, 1.25) is None
    assert ax.get_xlim() == (0.0, 3.0)                                # up to the midpoints, ends mirrored


def test_class_colours_are_stable_and_distinct():
    assert len({figures.class_colour(k) for k in range(len(MAFW_CLASSES))}) == len(MAFW_CLASSES)
    assert not any(mcolors.same_color(figures.class_colour(k), figures.NO_FACE_COLOUR)
                   for k in range(len(MAFW_CLASSES)))
    try:
        small = figures.timeline_figure(_spans(3), _softmax(3), BASIC_CLASSES)
        large = figures.timeline_figure(_spans(3), _softmax(3, classes=len(MAFW_CLASSES)), MAFW_CLASSES)
        for name in BASIC_CLASSES:                                   # "sad" is the same colour in both
            colours = [next(line.get_color() for line in _data_axes(fig)[0].get_lines() if line.get_label() == name)
                       for fig in (small, large)]
            assert mcolors.same_color(*colours)
    finally:
        plt.close("all")


@pytest.mark.parametrize("kwargs, message", [
    ({"probabilities": np.full((4, 3), 1 / 3)}, r"expected \(windows, 7\)"),
    ({"times_s": np.zeros((4, 3))}, r"expected \(4,\) window centres or \(4, 2\)"),
    ({"times_s": _spans(4)[:, ::-1]}, "ends .* before it starts"),
    ({"valid": np.ones(4, bool), "probabilities": np.where(np.arange(4)[:, None] == 1, np.nan, 1 / K)
      * np.ones((4, K))}, "window 1 is marked valid"),
    ({"kind": "area", "probabilities": np.full((4, K), 0.5)}, "sum to 1 per window"),
    ({"probabilities": np.full((4, K), 1.5)}, r"must lie in \[0, 1\]"),
    ({"kind": "bars"}, "'bars'"),
])
def test_bad_inputs_are_refused_in_one_line(tmp_path, kwargs, message):
    args = {"times_s": _spans(4), "probabilities": _softmax(4)} | kwargs
    with pytest.raises(ValueError, match=message):
        figures.probability_timeline(args.pop("times_s"), args.pop("probabilities"), BASIC_CLASSES,
                                     tmp_path / "t.png", **args)
    assert not (tmp_path / "t.png").exists()


def test_track_lengths_must_match(tmp_path):
    with pytest.raises(ValueError, match="one entry per track"):
        figures.probability_timeline([_spans(3)], [_softmax(3), _softmax(3)], BASIC_CLASSES, tmp_path / "t.png",
                                     track_labels=["face 1", "face 2"])
