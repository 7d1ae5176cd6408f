"""The figures of a run, as functions of arrays and files (``python -m dferjax.plots`` draws them for a run).

- :func:`plot_confusion` draws a row-normalised confusion matrix like the paper's Figs. 5 (DFEW)
  and 6 (AFEW): true class on the y axis, predicted class on the x axis, percentages in the cells,
  so the diagonal is each class's accuracy (recall).
- :func:`plot_curves` reads a run's ``metrics.jsonl`` (one JSON object per line, ``"kind": "train"``
  or ``"kind": "eval"``, as train.py writes it) and draws the training loss against the step and
  the evaluation WAR / UAR against the epoch.
- :func:`plot_tsne` maps the fused video features (the input of the classifier of Eq. 12) of the
  test clips to 2-D with scikit-learn's t-SNE, coloured by true class, as the paper's Figs. 9-10.
- :func:`plot_heatmap_overlays` lays the 18 key-point heat-maps (Sec. 3.2) over a few test clips'
  model input frames, with the key-points, to show where the region pooling of Eq. (2) looks: each
  heat-map resampled to the crop's pixels (:func:`upsample_grid`), with a colour bar.
- :func:`probability_timeline` draws the probability of each class over time for one input, one panel
  per face track, windows without a face shaded.

matplotlib's Agg backend is selected before pyplot is imported, so this works on machines without a
display. Each ``plot_*`` function and :func:`probability_timeline` takes explicit paths and returns the
written file; :func:`heatmap_overlay_figure` and :func:`timeline_figure` return the matplotlib Figure
instead (the caller closes it). A class has one colour in every figure (:func:`class_colour`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy.typing as npt  # noqa: E402

DPI = 150

# One colour per class index in every figure: tab10 without its grey (kept for "no face"), then black and
# three dark tab20b hues, so that all 11 MAFW classes differ.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                 "#17becf", "#000000", "#393b79", "#8c6d31", "#843c39")
NO_FACE_COLOUR = "#7f7f7f"
NO_FACE_ALPHA = 0.35
FORMATS = (".png", ".svg", ".pdf")


def class_colour(index: int) -> str:
    """The colour of class ``index`` (0-based, in the model's class order) in every figure."""
    return CLASS_COLOURS[int(index) % len(CLASS_COLOURS)]


def _save(fig: plt.Figure, path: str | Path, tight: bool = True) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return out


def plot_confusion(confusion: npt.ArrayLike, class_names: Sequence[str], path: str | Path,
                   title: str | None = None, normalize: bool = True) -> Path:
    """Write a confusion-matrix heat-map (rows true, columns predicted) as PNG; returns the path.

    With ``normalize`` each row is divided by its sum and the cells show percentages (a class absent
    from the labels shows an empty row); otherwise the cells show the counts.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {k} class names")
    if normalize:
        support = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0) * 100.0
        vmax = 100.0
    else:
        values = counts
        vmax = max(float(counts.max()), 1.0) if counts.size else 1.0

    side = max(4.0, 0.75 * k + 1.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalize else "samples")
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    fontsize = 9 if k <= 8 else 7
    for t in range(k):
        for p in range(k):
            value = values[t, p]
            text = f"{value:.1f}" if normalize else f"{int(round(value))}"
            ax.text(p, t, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if value > 0.6 * vmax else "black")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def read_metrics_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``train`` and ``eval`` records of a metrics.jsonl file, in file order.

    Blank lines and records of other kinds are ignored; a line that is not a JSON object (e.g. the
    last line of a run that is still writing) is skipped with a warning naming the file and line.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no metrics file; train.py writes metrics.jsonl in the run "
                                "directory once the first steps are logged")
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                warnings.warn(f"{source}:{number}: skipped, not valid JSON ({error.msg})", stacklevel=2)
                continue
            if not isinstance(record, dict):
                warnings.warn(f"{source}:{number}: skipped, not a JSON object", stacklevel=2)
                continue
            if record.get("kind") == "train":
                train.append(record)
            elif record.get("kind") == "eval":
                evals.append(record)
    return train, evals


def _series(records: list[dict[str, Any]], x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    """(x, y) for the records that have a finite numeric y; x falls back to the record's position."""
    xs, ys = [], []
    for index, record in enumerate(records):
        y = record.get(y_key)
        if not isinstance(y, (int, float)) or isinstance(y, bool) or not math.isfinite(y):
            continue
        x = record.get(x_key)
        xs.append(float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float(index))
        ys.append(float(y))
    return xs, ys


def _empty_panel(ax: plt.Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")


def _legend(ax: plt.Axes, twin: plt.Axes | None, loc: str) -> None:
    """One legend for a panel and its right-axis twin, drawn on top of both."""
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        (twin or ax).legend(handles, labels, loc=loc, fontsize=8)


def plot_curves(metrics_jsonl_path: str | Path, path: str | Path, title: str | None = None) -> Path:
    """Write the training curves of one run as PNG; returns the path.

    Left: training loss (and its ``loss_t`` / ``loss_s`` parts when logged) against the step, with
    the learning rate on a log-scale right axis. Right: evaluation WAR and UAR (in %) against the
    epoch, with the evaluation loss on a right axis. Missing keys or kinds leave a curve or a panel
    empty rather than failing, so this can be drawn while a run is in progress.
    """
    train, evals = read_metrics_jsonl(metrics_jsonl_path)
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))

    drew = False
    parts = _series(train, "step", "loss_s")[0]          # without an auxiliary head loss_t is the loss itself
    for key, label, style in (("loss", "loss", "-"), ("loss_t", "loss_t (temporal)", "--"),
                              ("loss_s", "loss_s (spatial, auxiliary)", ":")):
        if key == "loss_t" and not parts:
            continue
        xs, ys = _series(train, "step", key)
        if xs:
            ax_loss.plot(xs, ys, style, label=label, linewidth=1.2)
            drew = True
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss")
    if drew:
        xs, ys = _series(train, "step", "lr")
        twin = None
        if xs and all(y > 0 for y in ys):
            twin = ax_loss.twinx()
            twin.plot(xs, ys, color="gray", linewidth=0.8, alpha=0.7, label="learning rate")
            twin.set_yscale("log")
            twin.set_ylabel("learning rate", color="gray")
        _legend(ax_loss, twin, "upper right")
    else:
        _empty_panel(ax_loss, "no training records")

    drew = False
    for key, label, marker in (("war", "WAR", "o"), ("uar", "UAR", "s")):
        xs, ys = _series(evals, "epoch", key)
        if xs:
            ax_eval.plot(xs, [100.0 * y for y in ys], marker=marker, markersize=3, label=label)
            drew = True
    ax_eval.set_xlabel("epoch")
    ax_eval.set_ylabel("%")
    ax_eval.set_title("Evaluation")
    ax_eval.grid(alpha=0.3)
    xs, ys = _series(evals, "epoch", "loss")
    twin = None
    if xs:
        twin = ax_eval.twinx()
        twin.plot(xs, ys, color="gray", linewidth=0.8, alpha=0.7, label="evaluation loss")
        twin.set_ylabel("evaluation loss", color="gray")
        drew = True
    if drew:
        _legend(ax_eval, twin, "lower right")
    else:
        _empty_panel(ax_eval, "no evaluation records")

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def tsne_points(embeddings: npt.ArrayLike, seed: int = 0) -> np.ndarray:
    """2-D t-SNE coordinates (N, 2) of (N, d) features: scikit-learn's TSNE, PCA initialised, seeded,
    perplexity 30 (less for fewer than 91 points, as TSNE needs perplexity < N)."""
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, np.float64)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 clips, got {len(x)}")
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_tsne(embeddings: npt.ArrayLike, labels: npt.ArrayLike, class_names: Sequence[str], path: str | Path,
              title: str | None = None, seed: int = 0, max_points: int = 5000) -> Path:
    """A 2-D t-SNE (scikit-learn) of the fused video features, coloured by true class (Figs. 9-10).

    ``embeddings`` (N, d): the clip features that enter the classifier (the temporal module's output,
    Eq. 12's input). More than ``max_points`` clips are subsampled (seeded) to keep it minutes, not hours.
    """
    x = np.asarray(embeddings, np.float64)
    y = np.asarray(labels)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} embeddings but {len(y)} labels")
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    points = tsne_points(x, seed)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for k, name in enumerate(class_names):
        mask = y == k
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=8, color=class_colour(k), label=f"{name} ({mask.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_title(title or f"t-SNE of the fused video features ({len(x)} clips)")
    return _save(fig, path)


def upsample_grid(grid: npt.ArrayLike, shape: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """A (h, w) grid of cells laid over an image of ``shape = (height, width)`` pixels, as one value per pixel.

    Cell (i, j) covers the pixels [i * height / h, (i + 1) * height / h) x [j * width / w, (j + 1) * width / w)
    and its value sits at the cell's centre (where ``keypoints.render_heatmaps`` evaluates its Gaussians).
    "nearest" gives each pixel the value of the cell it lies in; "bilinear" interpolates between the cell
    centres at each pixel's centre and holds the outer cells' values beyond the outer centres (as
    OpenCV's ``INTER_LINEAR`` and ``jax.image.resize(..., "linear")`` do when enlarging).

    Returns:
      float32 (height, width).

    Raises:
      ValueError: ``grid`` is not 2-D or empty, ``shape`` is not positive, or ``method`` is unknown.
    """
    values = np.asarray(grid, np.float64)
    height, width = (int(n) for n in shape)
    if values.ndim != 2 or not values.size:
        raise ValueError(f"a heat-map grid must be a non-empty (h, w) array, got shape {values.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"the image shape must be positive, got {shape}")
    if method not in ("nearest", "bilinear"):
        raise ValueError(f"upsample method {method!r}: use 'nearest' or 'bilinear'")

    def resample(axis_values: np.ndarray, size: int) -> np.ndarray:
        cells = axis_values.shape[0]
        centres = (np.arange(size) + 0.5) * (cells / size)          # pixel centres in cell units
        if method == "nearest":
            return axis_values[np.minimum(np.floor(centres).astype(int), cells - 1)]
        u = np.clip(centres - 0.5, 0.0, cells - 1.0)                 # position between cell centres
        low = np.floor(u).astype(int)
        high = np.minimum(low + 1, cells - 1)
        frac = (u - low).reshape((-1,) + (1,) * (axis_values.ndim - 1))
        return axis_values[low] * (1.0 - frac) + axis_values[high] * frac

    rows = resample(values, height)                                  # (height, w)
    return resample(rows.T, width).T.astype(np.float32)              # (height, width)


HEATMAP_LABEL = "key-point heat-map, max of the 18\n(1 at a key-point, 0 far from all)"


def heatmap_overlay_figure(clips: Sequence[dict[str, Any]], class_names: Sequence[str],
                           frames_per_clip: int = 8) -> plt.Figure:
    """The figure of :func:`plot_heatmap_overlays`, not saved (the caller closes it)."""
    if not clips:
        raise ValueError("no clip to draw")
    cols = min(frames_per_clip, min(len(c["frames"]) for c in clips))
    fig, axes = plt.subplots(len(clips), cols, figsize=(1.6 * cols + 1.0, 1.75 * len(clips) + 0.3), squeeze=False,
                             layout="constrained")
    image = None
    for r, clip in enumerate(clips):
        take = np.round(np.linspace(0, len(clip["frames"]) - 1, cols)).astype(int)
        height, width = clip["frames"].shape[1:3]
        for c, t in enumerate(take):
            ax = axes[r, c]
            extent = (0, width, height, 0)     # pixel i spans [i, i + 1), as the key-points do
            ax.imshow(clip["frames"][t], extent=extent)
            grid = np.asarray(clip["heatmaps"][t], np.float32).max(axis=-1)
            image = ax.imshow(upsample_grid(grid, (height, width)), extent=extent, cmap="jet", alpha=0.45,
                              interpolation="nearest", vmin=0.0, vmax=1.0)
            pts = np.asarray(clip["keypoints"][t])
            ax.scatter(pts[:, 0], pts[:, 1], s=5, c="white", edgecolors="black", linewidths=0.3)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.axis("off")
        text = f"{clip.get('clip_id', '')}  true: {class_names[int(clip['label'])]}"
        if clip.get("predicted") is not None:
            text += f"  predicted: {class_names[int(clip['predicted'])]}"
        axes[r, 0].set_title(text, fontsize=7, loc="left").set_in_layout(False)
    bar = fig.colorbar(image, ax=axes, fraction=0.04, pad=0.02, aspect=30 * len(clips) ** 0.5)
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.set_label(HEATMAP_LABEL, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def plot_heatmap_overlays(clips: Sequence[dict[str, Any]], class_names: Sequence[str], path: str | Path,
                          frames_per_clip: int = 8) -> Path:
    """Rows of model input frames with the key-point heat-maps (max over the 18 maps) laid over them
    and the 18 key-points as dots: where the region pooling of Eq. (2) looks. Each heat-map is resampled
    bilinearly to the crop's pixels (:func:`upsample_grid`: cell i of an h-cell map covers the crop's
    pixels [i S / h, (i + 1) S / h)) and drawn over the crop's extent; a colour bar gives its 0-1 scale.

    ``clips``: dicts with "frames" (T, S, S, 3) uint8, "keypoints" (T, 18, 2) pixels, "heatmaps"
    (T, h, h, 18), "label" (int) and optionally "clip_id" and "predicted" (int).
    """
    return _save(heatmap_overlay_figure(clips, class_names, frames_per_clip), path)


# --- probability timeline ---------------------------------------------------------------------------

TIMELINE_KINDS = ("lines", "area")
TIMELINE_WIDTH_IN = 8.0        # 1200 pixels at DPI
TIMELINE_PANEL_IN = 2.6


def _timeline_track(times_s: npt.ArrayLike, probabilities: Any, num_classes: int, valid: npt.ArrayLike | None,
                    kind: str, where: str) -> dict[str, Any]:
    """One track's windows in time order: centres, spans, drawn intervals, probabilities (NaN: no face)."""
    if isinstance(probabilities, np.ndarray):
        probs = probabilities.astype(np.float64)
    else:
        rows = [np.full(num_classes, np.nan) if p is None else np.asarray(p, np.float64) for p in probabilities]
        probs = np.stack(rows) if rows else np.zeros((0, num_classes))
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"{where}probabilities of shape {probs.shape}: expected (windows, {num_classes}) "
                         f"for {num_classes} class names")
    count = len(probs)
    if not count:
        raise ValueError(f"{where}no window to draw")
    times = np.asarray(times_s, np.float64)
    if times.shape == (count,):
        centres, starts, ends = times, None, None
    elif times.shape == (count, 2):
        starts, ends = times[:, 0], times[:, 1]
        if np.any(ends <= starts):
            bad = int(np.flatnonzero(ends <= starts)[0])
            raise ValueError(f"{where}window {bad} ends ({ends[bad]:g} s) before it starts ({starts[bad]:g} s)")
        centres = (starts + ends) / 2.0
    else:
        raise ValueError(f"{where}times_s of shape {times.shape}: expected ({count},) window centres or "
                         f"({count}, 2) [start, end] pairs, in seconds")
    if not np.isfinite(times).all():
        raise ValueError(f"{where}times_s holds a value that is not finite")
    finite = np.isfinite(probs).all(axis=1)
    if valid is None:
        ok = finite
    else:
        ok = np.asarray(valid, bool)
        if ok.shape != (count,):
            raise ValueError(f"{where}valid of shape {ok.shape}: expected ({count},), one flag per window")
        if np.any(ok & ~finite):
            bad = int(np.flatnonzero(ok & ~finite)[0])
            raise ValueError(f"{where}window {bad} is marked valid but its probabilities are not finite")
    shown = probs[ok]
    if shown.size and (shown.min() < -1e-6 or shown.max() > 1 + 1e-6):
        raise ValueError(f"{where}probabilities must lie in [0, 1], got {shown.min():g} to {shown.max():g}")
    sums = shown.sum(axis=1)
    if kind == "area" and shown.size and np.abs(sums - 1.0).max() > 1e-2:
        raise ValueError(f"{where}a stacked area needs probabilities that sum to 1 per window, got sums from "
                         f"{sums.min():g} to {sums.max():g}: use kind='lines'")
    order = np.argsort(centres, kind="stable")
    centres, probs, ok = centres[order], probs[order], ok[order]
    probs[~ok] = np.nan
    # Each window is drawn over the times for which its centre is the nearest, within its span: its whole
    # span when windows do not overlap, the middle of it when they do.
    mids = (centres[:-1] + centres[1:]) / 2.0
    lo = np.concatenate([[-np.inf], mids])
    hi = np.concatenate([mids, [np.inf]])
    if starts is not None:
        starts, ends = starts[order], ends[order]
        lo, hi = np.maximum(lo, starts), np.minimum(hi, ends)
        x_range = (float(starts.min()), float(ends.max()))
    elif count > 1:
        lo[0], hi[-1] = centres[0] - (mids[0] - centres[0]), centres[-1] + (centres[-1] - mids[-1])
        x_range = (float(lo[0]), float(hi[-1]))
    else:
        lo[0] = hi[0] = centres[0]
        x_range = (float(centres[0]) - 0.5, float(centres[0]) + 0.5)
    note = ""
    if starts is not None:
        length = float(np.median(ends - starts))
        note = f"{count} window{'s' if count > 1 else ''} of {length:.3g} s"
        if count > 1:
            note += f" every {float(np.median(np.diff(starts))):.3g} s"
            if np.any(ends[:-1] > starts[1:] + 1e-9):
                note += ", overlapping: each drawn where its centre is the nearest"
    return {"centres": centres, "lo": lo, "hi": hi, "probs": probs, "valid": ok, "x_range": x_range, "note": note}


def _step_path(track: dict[str, Any], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of a step line holding ``values[i]`` over window i's drawn interval, broken (NaN) at a
    window without a face and between intervals that do not touch."""
    xs: list[float] = []
    ys: list[float] = []
    previous = None
    for i in np.flatnonzero(track["valid"]):
        if previous is not None and not (i == previous + 1 and track["lo"][i] <= track["hi"][previous] + 1e-12):
            xs.append(np.nan)
            ys.append(np.nan)
        xs += [track["lo"][i], track["hi"][i]]
        ys += [values[i], values[i]]
        previous = i
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _no_face_spans(track: dict[str, Any]) -> list[tuple[float, float]]:
    """The drawn intervals of windows without a face, touching ones merged."""
    spans: list[tuple[float, float]] = []
    for i in np.flatnonzero(~track["valid"]):
        lo, hi = float(track["lo"][i]), float(track["hi"][i])
        if spans and lo <= spans[-1][1] + 1e-12:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    return spans


def _draw_track(ax: plt.Axes, track: dict[str, Any], class_names: Sequence[str], kind: str) -> bool:
    """Draws one track on ``ax``; True when it has a window without a face."""
    spans = _no_face_spans(track)
    for lo, hi in spans:
        ax.axvspan(lo, hi, color=NO_FACE_COLOUR, alpha=NO_FACE_ALPHA, linewidth=0, zorder=0)
    probs = track["probs"]
    if kind == "area":
        top = np.cumsum(probs, axis=1)
        for k, name in enumerate(class_names):
            xs, upper = _step_path(track, top[:, k])
            _, lower = _step_path(track, top[:, k] - probs[:, k])
            if len(xs):
                ax.fill_between(xs, lower, upper, color=class_colour(k), linewidth=0, label=name, zorder=1)
        ax.set_ylim(0.0, 1.0)
    else:
        many = len(probs) > 80
        for k, name in enumerate(class_names):
            xs, ys = _step_path(track, probs[:, k])
            ax.plot(xs, ys, color=class_colour(k), linewidth=1.8, label=name, zorder=2)
            if not many:
                ax.plot(track["centres"][track["valid"]], probs[track["valid"], k], "o", markersize=3,
                        color=class_colour(k), zorder=2)
        ax.set_ylim(-0.03, 1.03)      # lines at 0 and 1 stay visible
    ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3, zorder=0)
    return bool(spans)


def timeline_figure(times_s: Any, probabilities: Any, class_names: Sequence[str], *, valid: Any = None,
                    title: str | None = None, kind: str = "lines",
                    track_labels: Sequence[str] | None = None) -> plt.Figure:
    """The figure of :func:`probability_timeline`, not saved (the caller closes it); same arguments
    without ``out_path``."""
    if kind not in TIMELINE_KINDS:
        raise ValueError(f"timeline kind {kind!r}: use one of {', '.join(TIMELINE_KINDS)}")
    if not len(class_names):
        raise ValueError("no class names")
    if track_labels is None:
        tracks = [_timeline_track(times_s, probabilities, len(class_names), valid, kind, "")]
        labels: list[str] = [""]
    else:
        labels = [str(label) for label in track_labels]
        valids = [None] * len(labels) if valid is None else list(valid)
        if not labels or not (len(times_s) == len(probabilities) == len(valids) == len(labels)):
            raise ValueError(f"{len(labels)} track labels: times_s ({len(times_s)}), probabilities "
                             f"({len(probabilities)}) and valid ({len(valids)}) need one entry per track")
        tracks = [_timeline_track(t, p, len(class_names), v, kind, f"track {label!r}: ")
                  for label, t, p, v in zip(labels, times_s, probabilities, valids)]
    fig, axes = plt.subplots(len(tracks), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(TIMELINE_WIDTH_IN, 0.9 + TIMELINE_PANEL_IN * len(tracks)))
    any_no_face = False
    for ax, track, label in zip(axes[:, 0], tracks, labels):
        any_no_face |= _draw_track(ax, track, class_names, kind)
        heading = "; ".join(part for part in (label, track["note"]) if part)
        if heading:
            ax.set_title(heading, loc="left", fontsize=9)
    lo = min(track["x_range"][0] for track in tracks)
    hi = max(track["x_range"][1] for track in tracks)
    axes[0, 0].set_xlim(lo, hi)
    axes[-1, 0].set_xlabel("time (s)")
    if kind == "area":
        handles: list[Any] = [Patch(color=class_colour(k)) for k in range(len(class_names))]
    else:
        handles = [Line2D([], [], color=class_colour(k), linewidth=1.8) for k in range(len(class_names))]
    names = list(class_names)
    if any_no_face:
        handles.append(Patch(color=NO_FACE_COLOUR, alpha=NO_FACE_ALPHA))
        names.append("no face")
    fig.legend(handles, names, loc="outside right upper", fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def probability_timeline(times_s: Any, probabilities: Any, class_names: Sequence[str], out_path: str | Path, *,
                         valid: Any = None, title: str | None = None, kind: str = "lines",
                         track_labels: Sequence[str] | None = None) -> Path:
    """Write the probability of each class over time for one input; returns the path.

    One panel per face track, sharing the time axis; a legend of the classes (each in its
    :func:`class_colour`); windows without a face shaded grey ("no face"). 1200 pixels wide as PNG
    (DPI 150); ``.svg`` and ``.pdf`` by the suffix of ``out_path``.

    Args:
      times_s: the windows' times in seconds: (W, 2) [start, end) pairs (each window is drawn over the
        times for which its centre is the nearest, within its span: its whole span when windows do not
        overlap) or (W,) centres (then up to the midpoints between neighbours).
      probabilities: (W, K) in [0, 1], K = len(class_names); a window without a face has a NaN row, or
        is None in a sequence of rows.
      class_names: the K class names, in the model's order (which sets the colours).
      out_path: the file to write (``.png``, ``.svg`` or ``.pdf``); its folder is created.
      valid: (W,) bool, False for a window without a face (its probabilities are ignored); default:
        the windows whose probabilities are finite.
      title: the figure's title (the input's name).
      kind: "lines" (one step line per class, dots at the window centres) or "area" (stacked, each
        window's stack summing to 1).
      track_labels: several face tracks of one input: one label per track (e.g. "face 1"); then
        ``times_s``, ``probabilities`` and ``valid`` (or None) are sequences of one entry per track.

    Raises:
      ValueError: a shape does not match, a window ends before it starts, a probability is outside
        [0, 1], a window marked valid has no finite probabilities, a stack (kind "area") does not sum
        to 1, ``kind`` is unknown or the suffix is not one of .png, .svg, .pdf.
    """
    if Path(out_path).suffix.lower() not in FORMATS:
        raise ValueError(f"{out_path}: write a timeline as one of {', '.join(FORMATS)}")
    fig = timeline_figure(times_s, probabilities, class_names, valid=valid, title=title, kind=kind,
                          track_labels=track_labels)
    return _save(fig, out_path, tight=False)
