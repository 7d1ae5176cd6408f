"""A run's checkpoint as one shareable model file, with its model card.

    python -m dferjax.export RUN model.safetensors [--which best|latest]

RUN is a run directory (its best checkpoint, or the latest with ``--which latest``) or a step directory
(``RUN/best/<step>``). The file is a safetensors file (``checkpoints.save_model_file``): the model's
parameters and batch-norm statistics as tensors, and in its metadata, as JSON, the model config (the
run's, applied onto the defaults when loaded), the training shards' preparation (PrepConfig, JPEG
quality, classes), the checkpoint (step, epoch, evaluations), a model card and a sha256 that loading
checks. Loading runs no code from the file. It is accepted wherever a run is::

    python -m dferjax.predict --checkpoint model.safetensors video.mp4
    python -m dferjax.evaluate --checkpoint model.safetensors --data SHARDS
    dferjax.Predictor("model.safetensors")

The model card, in Markdown, is written beside it (``model.md``): model, settings, classes, training
data set, scores, preparation, dferjax version, how to load it.

Exit status: 0 when written; 1 when the run cannot be exported (named).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import ml_collections

from dferjax.data.dataset import DataConfigError
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.inputs import example_spec
from dferjax.models import ModelConfigError


def export(run: str | Path, out: str | Path, which: str = "best") -> dict[str, Any]:
    """Write the model file ``out`` of a run's checkpoint and its card ``out`` with suffix ``.md``.

    Args:
      run: a run directory or a step directory inside one.
      out: the model file to write (``.safetensors`` suggested; replaced if it exists).
      which: for a run directory, "best" or "latest".
    Returns:
      {"path", "card_path", "bytes", "sha256", "card"}.
    Raises:
      CheckpointError: no checkpoint there, a run without its preparation, or ``out`` unusable (named).
    """
    out = Path(out)
    card_path = out.with_suffix(".md")
    if out.is_dir() or out.suffix.lower() == ".md":
        raise ckpt.CheckpointError(f"{out}: name the model file to write, e.g. {out / 'model.safetensors'}"
                                   if out.is_dir() else f"{out}: the card is written as {card_path}: name the model "
                                   "file, e.g. model.safetensors")
    run_dir, directory, step = ckpt.find_checkpoint(run, which)
    model, config, meta = ckpt.load_model(directory / str(step))
    _, params, rest = ckpt.split_model(model)
    tensors = ckpt.model_tensors(params, rest)
    data_info = ckpt.shareable_data_info(ckpt.load_data_info(run_dir, config))
    results = _results(run_dir)
    kind = "best" if directory.name == ckpt.BEST_DIR else "latest"
    counts = {half: sum(int(a.size) for name, a in tensors.items() if name.startswith(half + "/"))
              for half in ("params", "rest")}
    card = card_values(config, data_info, results, meta, step, kind, run_dir.name, counts)
    checkpoint = {"step": step, "which": kind, "run": run_dir.name, **{k: meta.get(k) for k in
                                                                       ("epoch", "position", "best", "last")}}
    sha256 = ckpt.save_model_file(out, tensors, config=ckpt.shareable_config(config), data=data_info,
                                  checkpoint=checkpoint, card=card)
    ckpt.load_model_file(out)           # what was written loads: format, hash, config, parameter shapes
    card_path.write_text(model_card(card, out.name, sha256), encoding="utf-8")
    return {"path": out, "card_path": card_path, "bytes": out.stat().st_size, "sha256": sha256, "card": card}


def _results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ckpt.RESULTS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def card_values(config: ml_collections.ConfigDict, data_info: dict[str, Any], results: dict[str, Any],
                meta: dict[str, Any], step: int, which: str, run_name: str, counts: dict[str, int]) -> dict[str, Any]:
    """The model card's facts (the file's ``card`` entry): model and settings, input, classes, training
    data set, the checkpoint's scores (None when it was saved between evaluations), preparation, counts."""
    name = config.model.name
    spec = example_spec(config)
    report = ckpt.checkpoint_report(meta)
    scores = None if report is None else {k: report.get(k) for k in ("epoch", "num_samples", "war", "uar",
                                                                       "per_class")}
    return {
        "model": name,
        "variant": results.get("variant", config.variant if name == "dfer" else ""),
        "settings": ckpt.config_to_dict(config.model[name]),
        "num_classes": int(config.model.num_classes),
        "dtype": config.model.dtype,
        "input": {"frames": spec.num_frames, "image_size": spec.image_size, "heatmap_size": spec.heatmap_size},
        "classes": list(data_info["classes"]),
        "dataset": results.get("dataset") or config.dataset or data_info.get("dataset"),
        "fold": config.fold or None,
        "split": "+".join(config.data.test_splits),
        "scores": scores,
        "run": run_name,
        "step": step,
        "which": which,
        "parameters": counts["params"],
        "statistics": counts["rest"],
        "preparation": data_info["prep"],
        "jpeg_quality": data_info.get("jpeg_quality"),
        "dferjax_version": ckpt.DFERJAX_VERSION,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def scores_table(scores: dict[str, Any]) -> str:
    """Per-class accuracy, UAR and WAR in % as a Markdown table."""
    names = list(scores.get("per_class") or {})
    return "\n".join(["| " + " | ".join(names + ["UAR", "WAR"]) + " |", "|" + "---:|" * (len(names) + 2),
                      "| " + " | ".join([_pct(scores["per_class"][n]) for n in names]
                                        + [_pct(scores.get("uar")), _pct(scores.get("war"))]) + " |"])


def model_card(card: dict[str, Any], file_name: str, sha256: str) -> str:
    """The model card in Markdown (``model.md`` beside the file)."""
    variant = f" (variant {card['variant']})" if card.get("variant") else ""
    fold = f", fold {card['fold']}" if card.get("fold") else ""
    settings = ", ".join(f"{k}={v}" for k, v in sorted(card["settings"].items()))
    heatmaps = f" and 18 key-point heat-maps of {card['input']['heatmap_size']}x{card['input']['heatmap_size']}" \
        if card["input"].get("heatmap_size") else ""
    prep = ", ".join(f"{k}={v}" for k, v in card["preparation"].items())
    scores = card.get("scores")
    lines = [f"# dferjax model: {card['model']}{variant} trained on {card['dataset']}", "",
             f"Facial expression classifier exported from run `{card['run']}` ({card['which']} checkpoint, step "
             f"{card['step']}) by `python -m dferjax.export`, dferjax {card['dferjax_version']}.", "",
             f"- **Model**: `{card['model']}`{variant}, {card['parameters']:,} parameters "
             f"(+ {card['statistics']:,} batch-norm statistics), {card['dtype']}; settings: {settings}",
             f"- **Input**: {card['input']['frames']} frame(s) of {card['input']['image_size']}x"
             f"{card['input']['image_size']} RGB face crops{heatmaps}",
             f"- **Classes** ({card['num_classes']}): {', '.join(card['classes'])}",
             f"- **Training data**: {card['dataset']}{fold}; evaluated on `{card['split']}`",
             f"- **Preparation** (dlib face, 68 landmarks -> 18 key-points, as in training): {prep}; "
             f"JPEG quality {card['jpeg_quality']}",
             f"- **File**: `{file_name}`, safetensors (format dferjax-model 1), sha256 `{sha256}`", ""]
    if scores:
        lines += [f"## Scores on {card['split']} (epoch {scores['epoch']}, {scores['num_samples']} samples)", "",
                  scores_table(scores), "", "Accuracy in %; per class = recall; UAR = mean class recall; "
                  "WAR = overall accuracy.", ""]
    else:
        lines += ["## Scores", "", "This checkpoint was saved between evaluations: no scores.", ""]
    lines += ["## Use", "", "```",
              f"# dferjax {card['dferjax_version']} or later: pip install -e . in its repository",
              f"python -m dferjax.predict --checkpoint {file_name} video.mp4 photo.jpg",
              f"python -m dferjax.evaluate --checkpoint {file_name} --data SHARDS",
              "```", "", "```python", "from dferjax import Predictor",
              f"print(Predictor({file_name!r}).predict('video.mp4').scores)", "```", "",
              "Loading runs no code from the file (safetensors tensors, JSON metadata) and refuses a file whose "
              "sha256 does not match its contents.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.export", description=__doc__.split("\n")[0])
    parser.add_argument("run", metavar="RUN", help="run directory (its best checkpoint) or a step directory "
                                                   "(RUN/best/<step>, RUN/checkpoints/<step>)")
    parser.add_argument("out", metavar="FILE", help=f"model file to write (suggested suffix {ckpt.MODEL_SUFFIX}); "
                                                    "its card is written beside it as FILE's name with .md")
    parser.add_argument("--which", choices=("best", "latest", "last"), default="best",
                        help="for a run directory: its best checkpoint (default) or the latest (last: the same, as "
                             "evaluate spells it)")
    args = parser.parse_args(argv)
    args.which = "latest" if args.which == "last" else args.which
    try:
        done = export(args.run, args.out, args.which)
    except (ckpt.CheckpointError, DataConfigError, ModelConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    card, scores = done["card"], done["card"]["scores"]
    print(f"wrote {done['path']}: {done['bytes'] / 1e6:.2f} MB, {card['parameters']:,} parameters "
          f"(+ {card['statistics']:,} batch-norm statistics), sha256 {done['sha256']}")
    variant = f" (variant {card['variant']})" if card.get("variant") else ""
    print(f"model {card['model']}{variant}, {card['num_classes']} classes ({', '.join(card['classes'])}); trained "
          f"on {card['dataset']}; {card['which']} checkpoint of run {card['run']}, step {card['step']}")
    if scores:
        print(f"scores on {card['split']} (epoch {scores['epoch']}, {scores['num_samples']} samples): "
              f"WAR {_pct(scores['war'])}%  UAR {_pct(scores['uar'])}%")
        print(scores_table(scores))
    else:
        print("no scores: the checkpoint was saved between evaluations")
    print(f"wrote {done['card_path']} (the model card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
