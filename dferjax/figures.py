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
  model input frames, with the key-points, to show where the region pooling of Eq. (2) looks.

matplotlib's Agg backend is selected before pyplot is imported, so this works on machines without a
display. Each function takes explicit paths and returns the written file.
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
import numpy.typing as npt  # noqa: E402

DPI = 150


def _save(fig: plt.Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
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
    for key, label, style in (("loss", "loss", "-"), ("loss_t", "loss_t (temporal)", "--"),
                              ("loss_s", "loss_s (spatial, auxiliary)", ":")):
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
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for k, name in enumerate(class_names):
        mask = y == k
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=8, color=colours(k), label=f"{name} ({mask.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2, loc="best")
    ax.set_title(title or f"t-SNE of the fused video features ({len(x)} clips)")
    return _save(fig, path)


def plot_heatmap_overlays(clips: Sequence[dict[str, Any]], class_names: Sequence[str], path: str | Path,
                          frames_per_clip: int = 8) -> Path:
    """Rows of model input frames with the key-point heat-maps (max over the 18 maps) laid over them
    and the 18 key-points as dots: where the region pooling of Eq. (2) looks.

    ``clips``: dicts with "frames" (T, S, S, 3) uint8, "keypoints" (T, 18, 2) pixels, "heatmaps"
    (T, h, h, 18), "label" (int) and optionally "clip_id" and "predicted" (int).
    """
    if not clips:
        raise ValueError("no clip to draw")
    cols = min(frames_per_clip, min(len(c["frames"]) for c in clips))
    fig, axes = plt.subplots(len(clips), cols, figsize=(1.6 * cols, 1.75 * len(clips)), squeeze=False)
    for r, clip in enumerate(clips):
        take = np.round(np.linspace(0, len(clip["frames"]) - 1, cols)).astype(int)
        size = clip["frames"].shape[1]
        for c, t in enumerate(take):
            ax = axes[r, c]
            extent = (0, size, size, 0)       # pixel i spans [i, i + 1), as the key-points do
            ax.imshow(clip["frames"][t], extent=extent)
            ax.imshow(np.asarray(clip["heatmaps"][t], np.float32).max(axis=-1), extent=extent, cmap="jet",
                      alpha=0.45, interpolation="bilinear", vmin=0.0, vmax=1.0)
            pts = np.asarray(clip["keypoints"][t])
            ax.scatter(pts[:, 0], pts[:, 1], s=5, c="white", edgecolors="black", linewidths=0.3)
            ax.set_xlim(0, size)
            ax.set_ylim(size, 0)
            ax.axis("off")
        text = f"{clip.get('clip_id', '')}  true: {class_names[int(clip['label'])]}"
        if clip.get("predicted") is not None:
            text += f"  predicted: {class_names[int(clip['predicted'])]}"
        axes[r, 0].set_title(text, fontsize=7, loc="left")
    fig.tight_layout()
    return _save(fig, path)
