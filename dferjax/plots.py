"""Figures of a training run: ``python -m dferjax.plots --run RUN`` writes them into RUN/figures.

confusion.png (rows true, columns predicted, as the paper's Figs. 5-6), curves.png (loss, lr,
WAR/UAR per epoch), tsne.png (the test clips' embeddings, Figs. 9-10) and heatmaps.png (a few test
clips' input frames with the 18 key-point heat-maps, for models that take heat-maps: each map resampled
to the crop's pixels and laid over it, with a 0-1 colour bar). The drawing is in dferjax.figures; the
evaluation of the checkpoint in dferjax.engine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dferjax.data import input_pipeline as ip
from dferjax.data.dataset import DataConfigError
from dferjax.data.records import CorruptRecordError
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.evaluation import checkpoint_outputs
from dferjax.figures import plot_confusion, plot_curves, plot_heatmap_overlays, plot_tsne
from dferjax.models import ModelConfigError


def run_figures(run: str | Path, out: str | Path | None = None, which: str = "best", data_dir: str | None = None,
                num_clips: int = 4, tsne: bool = True, progress: bool = True) -> list[Path]:
    """All figures of a run into ``out`` (default RUN/figures): confusion.png, curves.png, tsne.png,
    heatmaps.png. The last two (and the confusion matrix of a run without results.json) evaluate the
    run's checkpoint on its test split."""
    run = Path(run)
    out = Path(out) if out else run / ckpt.FIGURES_DIR
    written = []
    results_file = run / ckpt.RESULTS_FILE
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    report = results.get(which) if which in ("best", "last") else None
    if (run / ckpt.METRICS_FILE).is_file():
        written.append(plot_curves(run / ckpt.METRICS_FILE, out / "curves.png", title=run.name))
    outputs = None
    if tsne or num_clips or not report:
        ckpt_which = "best" if which == "best" else "latest"
        outputs = checkpoint_outputs(run, ckpt_which, data_dir=data_dir, progress=progress)
        report = report if report else outputs["report"]
    names = results.get("class_names") or (outputs or {}).get("class_names")
    epoch = report.get("epoch")
    written.append(plot_confusion(report["confusion"], names, out / "confusion.png",
                                  title=f"{run.name}: WAR {100 * report['war']:.2f}%, UAR {100 * report['uar']:.2f}%"
                                        + (f" (epoch {epoch})" if epoch else "")))
    if outputs is not None and tsne:
        written.append(plot_tsne(outputs["embeddings"], outputs["labels"], outputs["class_names"], out / "tsne.png",
                                 title=f"{run.name}: t-SNE of the fused video features"))
    if outputs is not None and num_clips and outputs["spec"].heatmap_size is None:
        print(f"note: {run}'s model takes no key-point heat-maps: no heatmaps.png", file=sys.stderr)
    elif outputs is not None and num_clips:
        predicted = np.argmax(outputs["logits"], axis=-1)
        labels = outputs["labels"]
        chosen: list[int] = []
        for k in range(len(names)):                    # one clip per class first, then any
            hits = np.flatnonzero(labels == k)
            if len(hits) and len(chosen) < num_clips:
                chosen.append(int(hits[0]))
        chosen += [i for i in range(len(labels)) if i not in chosen][:num_clips - len(chosen)]
        clips = []
        for i in chosen:
            frames, points, heatmaps, header = ip.record_inputs(outputs["source"][i], outputs["spec"], None)
            clips.append({"frames": frames, "keypoints": points, "heatmaps": heatmaps, "label": header["label"],
                          "clip_id": header["clip_id"],
                          "predicted": int(predicted[i])})
        written.append(plot_heatmap_overlays(clips, names, out / "heatmaps.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.plots",
                                     description="The figures of a training run (confusion, curves, t-SNE, "
                                                 "heat-map overlays).")
    parser.add_argument("--run", required=True, help="run directory (python -m dferjax.train --workdir)")
    parser.add_argument("--out", help="output folder (default RUN/figures)")
    parser.add_argument("--which", choices=("best", "last"), default="best",
                        help="the best epoch's checkpoint and results (default) or the last")
    parser.add_argument("--data", help="shard directory, when the run's data.dir has moved")
    parser.add_argument("--clips", type=int, default=4, help="test clips in the heat-map overlay (0: none)")
    parser.add_argument("--no-tsne", action="store_true", help="skip the t-SNE (it evaluates the test split)")
    args = parser.parse_args(argv)
    try:
        written = run_figures(args.run, args.out, args.which, args.data, args.clips, not args.no_tsne)
    except (ckpt.CheckpointError, DataConfigError, ModelConfigError, CorruptRecordError, FileNotFoundError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
