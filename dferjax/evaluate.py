"""Evaluation of trained models: a checkpoint on a split, and k-fold summaries of finished runs.

    python -m dferjax.evaluate --checkpoint runs/dfew-1 [--which best|latest] [--splits fold1] [--data DIR]
    python -m dferjax.evaluate --checkpoint model.safetensors --data DIR [--splits test]
    python -m dferjax.evaluate --summary runs/dfew-E-fold* [--which best|last] [--out PATH_PREFIX]
    python -m dferjax.evaluate --summary runs/heads-*/dfew-fold* [--ignore train.seed]

``--checkpoint`` loads a run's best (or latest) checkpoint, evaluates it on the run's test splits (or
``--splits``) with the same input pipeline as training, prints WAR, UAR and per-class accuracy and
writes ``eval-<splits>.json`` and ``eval-<splits>-confusion.png`` into the run directory. A model file
(``python -m dferjax.export``) is evaluated the same way on the shards ``--data`` names; its results go
beside it (``NAME.eval-<splits>.json``, ``NAME.eval-<splits>-confusion.png``).

DFEW and MAFW are reported as five-fold cross-validation: each fold's per-class accuracy, UAR and
WAR, then their mean over the folds (the paper's Tables 3 and 7 give the mean). FERV39k is also
reported per scene (Table 6). The summary reads the ``results.json`` that train.py writes into each
run directory, prints a Markdown table and writes ``PATH_PREFIX.md`` and ``PATH_PREFIX.json``
(default: ``summary.md`` / ``summary.json`` in the common parent directory of the runs).

Runs of several settings (an ablation sweep launched as separate runs, e.g. ``model.dfer.num_heads`` 6, 8,
10, 12 on each of DFEW's folds) are read back as one table in the style of the paper's Tables 9-12 and
Fig. 8: the settings are the config keys whose values differ between the runs (each run's
``config.json``; the fold, ``runtime`` and the keys of ``--ignore`` left out, paths compared by their
last part), one row per setting, WAR and UAR per fold, their mean over the folds, and the number of runs
(:func:`ablation_table`; in the JSON under ``ablation`` in any case).

The module is organised in sections: evaluating a checkpoint, the k-fold summary, the ablation table,
the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dferjax.data.dataset import DataConfigError
from dferjax.data.records import CorruptRecordError
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.evaluation import checkpoint_outputs
from dferjax.figures import plot_confusion
from dferjax.models import ModelConfigError

RESULTS_FILE = ckpt.RESULTS_FILE
SUMMARY_PREFIX = "summary"
REPORT_KINDS = ("best", "last")


# ----------------------------------------------------------------------------------------------
# evaluating a checkpoint on a split
# ----------------------------------------------------------------------------------------------

BALANCED_TEST_SETS = {
    "affectnet": "AffectNet's validation set (the test set of every paper) is balanced, 500 images per class: "
                 "WAR and UAR coincide on it up to rounding",
}
"""Data sets whose test set has equal class counts: the report says so (``config.dataset`` -> the note)."""


def evaluate_checkpoint(checkpoint: str | Path, which: str = "best", splits: Sequence[str] | None = None,
                        data_dir: str | None = None, batch_size: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
    """metrics.report (plus "epoch", "step", "splits", and "notes" on the test set) of a run's checkpoint on
    ``splits``."""
    out = checkpoint_outputs(checkpoint, which, splits, data_dir, batch_size, progress)
    notes = [BALANCED_TEST_SETS[out["config"].dataset]] if out["config"].dataset in BALANCED_TEST_SETS else []
    return {**out["report"], "epoch": (out["meta"].get("last") or {}).get("epoch"), "splits": out["splits"],
            "checkpoint": str(checkpoint), "which": which, "notes": notes, "used": out["used"], "step": out["step"]}


def format_report(report: dict[str, Any]) -> str:
    """WAR, UAR and per-class accuracy of one report as a small Markdown table."""
    names = list(report["per_class"])
    head = "| " + " | ".join(names + ["UAR", "WAR"]) + " |"
    rule = "|" + "---|" * (len(names) + 2)
    row = "| " + " | ".join([_pct(report["per_class"][n]) for n in names]
                            + [_pct(report["uar"]), _pct(report["war"])]) + " |"
    return "\n".join([head, rule, row])


# ----------------------------------------------------------------------------------------------
# k-fold summary of training runs
# ----------------------------------------------------------------------------------------------

def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The parsed ``results.json`` of a training run directory, checked for the keys a summary needs.

    Schema (train.py): ``dataset``, ``fold`` (int, or null for single-split datasets), ``variant``,
    ``split``, ``class_names`` and the reports ``best`` / ``last`` (metrics.report dicts plus
    ``epoch``).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: not a directory; pass training run directories (each holding "
                                f"{RESULTS_FILE})")
    path = run / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run {run} has not finished an evaluation yet "
                                "(train.py writes it after the first evaluation); wait or leave the run out")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); re-run the evaluation of {run} "
                         "or leave the run out") from error
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(results).__name__}")
    for key in ("dataset", "class_names"):
        if key not in results:
            raise ValueError(f"{path}: missing key {key!r}; it was not written by dferjax's train.py")
    names = results["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: 'class_names' must be a non-empty list of strings, got {names!r}")
    fold = results.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool)):
        raise ValueError(f"{path}: 'fold' must be an integer or null, got {fold!r}")
    return results


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1) of the values that are not None/NaN."""
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None, None
    mean = statistics.fmean(present)
    std = statistics.stdev(present) if len(present) > 1 else None
    return mean, std


def _run_label(run: Path, fold: int | None) -> str:
    return str(fold) if fold is not None else run.name


def _report_of(results: dict[str, Any], which: str, run: Path) -> dict[str, Any]:
    report = results.get(which)
    if not isinstance(report, dict):
        other = [k for k in REPORT_KINDS if k != which and isinstance(results.get(k), dict)]
        hint = f"; it has {other[0]!r} (--which {other[0]})" if other else ""
        raise ValueError(f"{run / RESULTS_FILE}: no {which!r} report{hint}")
    for key in ("war", "uar", "per_class"):
        if key not in report:
            raise ValueError(f"{run / RESULTS_FILE}: the {which!r} report lacks {key!r}; "
                             "it was not written by metrics.report")
    return report


def _load_runs(run_dirs: Sequence[str | Path], which: str) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(run directory, its results.json, its ``which`` report) of every run.

    Raises:
      ValueError: no runs, an unknown ``which``, a run without the report.
      FileNotFoundError: a run without results.json.
    """
    if which not in REPORT_KINDS:
        raise ValueError(f"which must be one of {REPORT_KINDS}, got {which!r}")
    if not run_dirs:
        raise ValueError("no run directories given; pass at least one training run directory")
    loaded = []
    for run_dir in run_dirs:
        run = Path(run_dir)
        results = load_results(run)
        loaded.append((run, results, _report_of(results, which, run)))
    return loaded


def kfold_summary(run_dirs: Sequence[str | Path], which: str = "best") -> dict[str, Any]:
    """Per-run rows and their mean / std over the runs, from each run's ``results.json``.

    ``which`` picks the report of each run: ``best`` (the epoch with the best validation metric)
    or ``last``. Returns a JSON-serialisable dict::

        {"dataset", "variant", "which", "class_names",
         "rows": [{"run", "label", "fold", "split", "epoch", "num_samples",
                   "per_class": {name: acc | None}, "uar", "war"}, ...],   # sorted by fold
         "mean": {"per_class": {...}, "uar", "war", "num_runs"},
         "std":  {"per_class": {...}, "uar", "war"},                      # None with one run
         "groups": {group: {"rows": [{"run", "label", "fold", "num_samples", "uar", "war"}],
                            "mean": {"num_samples", "uar", "war"}, "std": {"uar", "war"}}}}

    ``groups`` (e.g. FERV39k scenes) is present only if some run's report has groups. Accuracies are
    fractions; a per-class mean is over the runs where that class was present (None in a run means
    no test sample of it). The std is the sample standard deviation over runs. All runs must share
    dataset, variant and class names, and no fold may appear twice.
    """
    loaded = _load_runs(run_dirs, which)

    first_run, first, _ = loaded[0]
    names = list(first["class_names"])
    seen_folds: dict[int, Path] = {}
    for run, results, _ in loaded:
        for key in ("dataset", "variant"):
            if results.get(key) != first.get(key):
                raise ValueError(f"{run / RESULTS_FILE}: {key} {results.get(key)!r} differs from "
                                 f"{first.get(key)!r} of {first_run}; summarise runs of one {key} at a time")
        if list(results["class_names"]) != names:
            raise ValueError(f"{run / RESULTS_FILE}: class_names {results['class_names']} differ from "
                             f"{names} of {first_run}; runs with different classes cannot be averaged")
        fold = results.get("fold")
        if fold is not None:
            if fold in seen_folds:
                raise ValueError(f"fold {fold} appears twice: {seen_folds[fold]} and {run}; "
                                 "pass one run per fold")
            seen_folds[fold] = run

    def sort_key(item: tuple[Path, dict[str, Any], dict[str, Any]]) -> tuple[int, int, str]:
        run, results, _ = item
        fold = results.get("fold")
        return (0, fold, str(run)) if fold is not None else (1, 0, str(run))

    loaded.sort(key=sort_key)

    rows = []
    for run, results, report in loaded:
        per_class = report.get("per_class") or {}
        rows.append({
            "run": str(run),
            "label": _run_label(run, results.get("fold")),
            "fold": results.get("fold"),
            "split": results.get("split"),
            "epoch": report.get("epoch"),
            "num_samples": report.get("num_samples"),
            "per_class": {name: per_class.get(name) for name in names},
            "uar": report["uar"],
            "war": report["war"],
        })

    mean: dict[str, Any] = {"per_class": {}, "num_runs": len(rows)}
    std: dict[str, Any] = {"per_class": {}}
    for name in names:
        mean["per_class"][name], std["per_class"][name] = _mean_std([r["per_class"][name] for r in rows])
    for key in ("uar", "war"):
        mean[key], std[key] = _mean_std([r[key] for r in rows])

    summary: dict[str, Any] = {
        "dataset": first["dataset"],
        "variant": first.get("variant"),
        "which": which,
        "class_names": names,
        "rows": rows,
        "mean": mean,
        "std": std,
    }

    group_names = sorted({g for _, _, report in loaded for g in (report.get("groups") or {})})
    if group_names:
        groups = {}
        for group in group_names:
            group_rows = []
            for (run, results, report), row in zip(loaded, rows):
                entry = (report.get("groups") or {}).get(group)
                if entry is None:
                    continue
                group_rows.append({"run": row["run"], "label": row["label"], "fold": row["fold"],
                                   "num_samples": entry.get("num_samples"),
                                   "uar": entry.get("uar"), "war": entry.get("war")})
            group_mean: dict[str, Any] = {"num_samples": _mean_std([r["num_samples"] for r in group_rows])[0]}
            group_std: dict[str, Any] = {}
            for key in ("uar", "war"):
                group_mean[key], group_std[key] = _mean_std([r[key] for r in group_rows])
            groups[group] = {"rows": group_rows, "mean": group_mean, "std": group_std}
        summary["groups"] = groups
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100.0 * value:.2f}"


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def format_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: a table Fold | each class | UAR | WAR in % (2 decimals), one row per
    run then Mean (and Std with several runs), and a per-scene WAR / UAR table when present; for runs of
    several settings (``"kind": "ablation"``), the ablation table (:func:`format_ablation`)."""
    if summary.get("kind") == "ablation":
        return format_ablation(summary["ablation"])
    names = summary["class_names"]
    rows = summary["rows"]
    multi = len(rows) > 1
    variant = f", variant {summary['variant']}" if summary.get("variant") else ""
    lines = [f"# {summary['dataset']}{variant}: {summary['which']} epoch of {len(rows)} run(s)", ""]

    lines.append("| " + " | ".join(["Fold", *names, "UAR", "WAR"]) + " |")
    lines.append("|" + "---|" + "---:|" * (len(names) + 2))

    def table_row(label: str, stats: dict[str, Any]) -> str:
        cells = [label, *(_pct(stats["per_class"].get(n)) for n in names), _pct(stats["uar"]), _pct(stats["war"])]
        return "| " + " | ".join(cells) + " |"

    for row in rows:
        lines.append(table_row(row["label"], row))
    lines.append(table_row("**Mean**", summary["mean"]))
    if multi:
        lines.append(table_row("Std", summary["std"]))
    lines.append("")
    lines.append("Accuracies in % (per-class accuracy = recall; UAR = mean per-class recall over the classes "
                 "present; WAR = overall accuracy); Std = sample standard deviation over runs; "
                 "- = no sample of that class.")
    lines.append("")
    lines.append("Runs:")
    for row in rows:
        epoch = f", epoch {row['epoch']}" if row.get("epoch") is not None else ""
        samples = f", {row['num_samples']} samples" if row.get("num_samples") is not None else ""
        lines.append(f"- {row['label']}: `{row['run']}`{epoch}{samples}")

    groups = summary.get("groups")
    if groups:
        title = "mean over runs" if multi else "one run"
        lines += ["", f"## Per scene ({title})", "",
                  "| Scene | Samples | UAR | WAR |", "|---|---:|---:|---:|"]
        total = sum(r["num_samples"] or 0 for r in rows) / len(rows)
        lines.append(f"| All | {_count(total)} | {_pct(summary['mean']['uar'])} | {_pct(summary['mean']['war'])} |")
        for group, entry in groups.items():
            mean = entry["mean"]
            lines.append(f"| {group} | {_count(mean['num_samples'])} | {_pct(mean['uar'])} | {_pct(mean['war'])} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# ablation table: runs of several settings
# ----------------------------------------------------------------------------------------------

NOT_SETTINGS = ("fold", "runtime")
"""Config keys (or sections) that never make a setting of the ablation table: the fold is a column, and
``runtime`` changes no result (``dferjax.config.MAY_CHANGE_ON_RESUME``)."""
FOLD_SPLITS = ("data.train_splits", "data.test_splits")
"""Set by the fold in a run with a fold (``configs/dfew.py:fold=3``): not a setting there."""
PATH_KEYS = ("data.dir", "train.init_checkpoint")
"""Paths, compared by their last part (the folders differ between machines and jobs, the name does not):
these and the selected model's ``*_weights`` keys (``model.dfer.backbone_weights``)."""
LABEL_KEYS = ("dataset", "model", "variant")
"""What ``results.json`` says of a run's setting: compared instead of the config when a run lacks
``config.json``."""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def run_settings(run_dir: str | Path, results: dict[str, Any], ignore: Sequence[str] = ()) -> dict[str, Any] | None:
    """A run's settings as the ablation table compares them: its ``config.json`` in today's layout
    (``checkpoints.upgrade_config``, keys added since at their defaults), flattened to dotted keys, with
    the selected model's section only; without the keys of :data:`NOT_SETTINGS`, the fold's splits, and
    ``ignore`` (keys or sections); paths by their last part. None when the run has no config.json.

    Raises:
      ValueError: config.json is not a JSON object (naming the file).
    """
    path = Path(run_dir) / ckpt.CONFIG_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); leave the run out") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
    values = ckpt.with_new_keys(ckpt.upgrade_config(values))
    model = values.get("model", {})
    name = model.get("name", "dfer")
    values["model"] = {k: v for k, v in model.items() if not isinstance(v, dict) or k == name}
    flat = _flatten(values)
    skip = [*NOT_SETTINGS, *ignore] + (list(FOLD_SPLITS) if results.get("fold") is not None else [])
    out = {}
    for key, value in flat.items():
        if _matches(key, skip):
            continue
        if isinstance(value, str) and value and (key in PATH_KEYS or key.startswith(f"model.{name}.")
                                                 and key.endswith("_weights")):
            value = Path(value).name
        out[key] = value
    return out


def _sort_value(value: Any) -> tuple[Any, ...]:
    """Numbers in numeric order, then strings, then anything else by its JSON; an absent key first."""
    if value is _ABSENT:
        return (0,)
    if isinstance(value, (bool, int, float)):
        return (1, float(value))
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True))


_ABSENT = object()


def ablation_table(run_dirs: Sequence[str | Path], which: str = "best", ignore: Sequence[str] = ()) -> dict[str, Any]:
    """WAR and UAR of runs of several settings, one row per setting (the paper's Tables 9-12, Fig. 8).

    A run's setting is the values of the config keys that differ between the runs (:func:`run_settings`;
    a key that only some runs have differs where two runs that have it disagree, so runs made before a
    key existed, or of another model, do not differ in it). Without a config.json in every run, the runs
    are compared on what their results.json says (:data:`LABEL_KEYS`). Per fold: the mean over the
    setting's runs of that fold (usually one); the setting's mean is over its folds (over its runs for a
    data set without folds).

    Args:
      run_dirs: training run directories (results.json, and config.json as train.py writes them).
      which: each run's ``best`` or ``last`` report.
      ignore: further keys or sections that make no setting (e.g. ``train.seed``: seeds as repeats).
    Returns:
      A JSON-serialisable dict::

        {"which", "keys": [the differing keys, sorted], "compared": "config" | "results",
         "folds": [the folds of the runs, sorted; null for runs without a fold],
         "rows": [{"setting": {key: value}, "per_fold": [{"fold", "war", "uar", "num_runs"}],
                   "mean": {"war", "uar"}, "num_folds", "num_runs", "runs": [run dir, ...]}, ...]}

      rows sorted by their settings in key order (numbers numerically); an absent key's value is null.
    Raises:
      ValueError: no runs, an unknown ``which``, a run without the report, or an unreadable file (named).
      FileNotFoundError: a run without results.json.
    """
    loaded = [(run, results, report, run_settings(run, results, ignore))
              for run, results, report in _load_runs(run_dirs, which)]
    compared = "config" if all(settings is not None for *_, settings in loaded) else "results"
    if compared == "results":
        loaded = [(run, results, report, {k: results.get(k) for k in LABEL_KEYS if not _matches(k, ignore)})
                  for run, results, report, _ in loaded]
    keys = sorted({k for *_, settings in loaded for k in settings
                   if len({json.dumps(s[k], sort_keys=True) for *_, s in loaded if k in s}) > 1})

    groups: dict[str, dict[str, Any]] = {}
    for run, results, report, settings in loaded:
        setting = {k: settings.get(k, _ABSENT) for k in keys}
        ident = json.dumps({k: repr(v) if v is _ABSENT else v for k, v in setting.items()}, sort_keys=True)
        group = groups.setdefault(ident, {"setting": setting, "runs": []})
        group["runs"].append((run, results.get("fold"), report))
    folds = sorted({fold for g in groups.values() for _, fold, _ in g["runs"]},
                   key=lambda f: (f is None, f if f is not None else 0))

    rows = []
    for group in sorted(groups.values(), key=lambda g: [_sort_value(g["setting"][k]) for k in keys]):
        per_fold = []
        for fold in folds:
            reports = [r for _, f, r in group["runs"] if f == fold]
            if reports:
                per_fold.append({"fold": fold, "war": _mean_std([r["war"] for r in reports])[0],
                                 "uar": _mean_std([r["uar"] for r in reports])[0], "num_runs": len(reports)})
        rows.append({
            "setting": {k: (None if v is _ABSENT else v) for k, v in group["setting"].items()},
            "per_fold": per_fold,
            "mean": {m: _mean_std([f[m] for f in per_fold])[0] for m in ("war", "uar")},
            "num_folds": len(per_fold),
            "num_runs": len(group["runs"]),
            "runs": sorted(str(run) for run, _, _ in group["runs"]),
        })
    return {"which": which, "keys": keys, "compared": compared, "folds": folds, "ignored": list(ignore), "rows": rows}


def _setting_cell(value: Any) -> str:
    """A setting's value as the command line writes it: tuples in parentheses, "" for an empty string."""
    if value is None:
        return "-"
    if value == "":
        return '""'
    if isinstance(value, list):
        return "(" + ", ".join(_setting_cell(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_ablation(table: dict[str, Any]) -> str:
    """The ablation table as Markdown: the differing keys, WAR and UAR per fold and their mean in %,
    the number of runs; then the runs of each setting."""
    keys, folds, rows = table["keys"], table["folds"], table["rows"]
    one_split = folds == [None]
    head = [*(keys or ["setting"])]
    for fold in folds:
        tag = "" if one_split else ("no fold " if fold is None else f"F{fold} ")
        head += [f"{tag}WAR", f"{tag}UAR"]
    if not one_split:
        head += ["Mean WAR", "Mean UAR"]
    head.append("Runs")
    lines = [f"# Ablation: {table['which']} epoch of {sum(r['num_runs'] for r in rows)} run(s), "
             f"{len(rows)} setting(s)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(keys or ["setting"])
             + "---:|" * (len(head) - len(keys or ["setting"]))]
    for row in rows:
        by_fold = {f["fold"]: f for f in row["per_fold"]}
        cells = [_setting_cell(row["setting"][k]) for k in keys] or ["(all runs)"]
        for fold in folds:
            entry = by_fold.get(fold)
            cells += [_pct(entry["war"]), _pct(entry["uar"])] if entry else ["-", "-"]
        if not one_split:
            mean = [_pct(row["mean"]["war"]), _pct(row["mean"]["uar"])]
            if row["num_folds"] < len(folds):
                mean = [f"{m}*" for m in mean]
            cells += mean
        cells.append(str(row["num_runs"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Accuracies in % (WAR = overall accuracy, UAR = mean per-class recall); a fold's value is the "
              "mean of the setting's runs of that fold; Mean = over the setting's folds."]
    if any(r["num_folds"] < len(folds) for r in rows) and not one_split:
        lines.append("* = mean over fewer folds than the table has (a run missing): not comparable with the others.")
    basis = ("each run's config.json" if table["compared"] == "config"
             else "results.json's dataset, model and variant (not every run has a config.json)")
    left = ", ".join(["fold", "runtime", *table.get("ignored", [])])
    lines += [f"Settings: the keys whose values differ between the runs, from {basis}; not compared: {left}; "
              "paths by their last part.", "", "Runs:"]
    for row in rows:
        label = ", ".join(f"{k}={_setting_cell(row['setting'][k])}" for k in keys) or "all runs"
        lines.append(f"- {label}: " + ", ".join(f"`{r}`" for r in row["runs"]))
    return "\n".join(lines) + "\n"


def summarise(run_dirs: Sequence[str | Path], which: str = "best", ignore: Sequence[str] = ()) -> dict[str, Any]:
    """What ``--summary`` writes: the k-fold summary (:func:`kfold_summary`) of runs of one setting with one
    run per fold, plus its ``ablation`` table; otherwise ``{"kind": "ablation", "which", "ablation"}``
    (:func:`ablation_table`): several settings, or repeated runs of a fold."""
    table = ablation_table(run_dirs, which, ignore)
    if len(table["rows"]) == 1 and all(f["num_runs"] == 1 for f in table["rows"][0]["per_fold"]):
        summary = kfold_summary(run_dirs, which)
        summary["ablation"] = table
        return summary
    return {"kind": "ablation", "which": which, "ablation": table}


def default_summary_prefix(run_dirs: Sequence[str | Path]) -> Path:
    """``summary`` in the deepest directory that contains all the runs (their common parent)."""
    parents = [str(Path(r).resolve().parent) for r in run_dirs]
    return Path(os.path.commonpath(parents)) / SUMMARY_PREFIX


def write_summary(summary: dict[str, Any], prefix: str | Path) -> tuple[Path, Path]:
    """Write ``PREFIX.md`` (format_markdown) and ``PREFIX.json``; returns both paths."""
    base = Path(prefix)
    if base.suffix in (".md", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    md_path = base.parent / (base.name + ".md")
    json_path = base.parent / (base.name + ".json")
    md_path.write_text(format_markdown(summary), encoding="utf-8")
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return md_path, json_path


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--summary", nargs="+", metavar="RUN_DIR",
                        help="training run directories (each with results.json) to summarise, "
                             "e.g. runs/dfew-E-fold*")
    parser.add_argument("--which", choices=REPORT_KINDS + ("latest",), default="best",
                        help="which report of each run (--summary) or checkpoint (--checkpoint; last = the "
                             "latest): the best epoch or the last (default: best)")
    parser.add_argument("--ignore", nargs="+", default=[], metavar="KEY",
                        help="--summary: config keys or sections that make no setting of the ablation table "
                             "(e.g. train.seed, to average runs that differ only in the seed)")
    parser.add_argument("--out", metavar="PATH_PREFIX",
                        help="write PATH_PREFIX.md and PATH_PREFIX.json (default: summary.md / "
                             "summary.json in the common parent directory of the runs)")
    parser.add_argument("--checkpoint", metavar="RUN_OR_MODEL_FILE",
                        help="evaluate this run's checkpoint (a run directory or RUN/best/<step>) or a model file "
                             "(python -m dferjax.export)")
    parser.add_argument("--splits", nargs="+", help="shard splits to evaluate on (default: the run's test splits)")
    parser.add_argument("--data", metavar="DIR", help="shard directory (default: the run's data.dir; required "
                                                      "with a model file)")
    args = parser.parse_args(argv)
    args.which = "last" if args.which == "latest" else args.which      # predict's and export's spelling
    if args.checkpoint:
        which = "latest" if args.which == "last" else "best"
        try:
            report = evaluate_checkpoint(args.checkpoint, which, args.splits, args.data)
        except (ckpt.CheckpointError, DataConfigError, ModelConfigError, CorruptRecordError,
                FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        json_file, png_file = ckpt.eval_files(ckpt.checkpoint_home(args.checkpoint, which), report["splits"],
                                              args.data if ckpt.is_model_file(args.checkpoint) else None)
        json_file.write_text(json.dumps(report, indent=2) + "\n")
        plot_confusion(report["confusion"], report["class_names"], png_file)
        epoch = f" (epoch {report['epoch']})" if report.get("epoch") is not None else ""
        print(f"checkpoint {report['used']}{epoch}")
        print(format_report(report))
        print(f"{report['num_samples']} samples of {', '.join(report['splits'])}: WAR {_pct(report['war'])}  "
              f"UAR {_pct(report['uar'])}; wrote {json_file}")
        for note in report["notes"]:
            print(f"note: {note}")
        return 0
    if not args.summary:
        parser.error("nothing to do: pass --checkpoint RUN to evaluate a checkpoint or --summary RUN_DIR "
                     "[RUN_DIR ...] to summarise finished training runs")

    run_dirs = []
    for item in args.summary:
        if Path(item).is_file():
            print(f"note: skipping {item}: a file, not a run directory", file=sys.stderr)
            continue
        run_dirs.append(item)
    try:
        summary = summarise(run_dirs, which=args.which, ignore=args.ignore)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    prefix = Path(args.out) if args.out else default_summary_prefix(run_dirs)
    md_path, json_path = write_summary(summary, prefix)
    print(format_markdown(summary))
    print(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
