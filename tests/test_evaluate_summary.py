"""k-fold summary of training runs: hand-computed means, Markdown, errors that name the run, CLI; the
ablation table of runs of several settings (means against NumPy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dferjax import evaluate
from dferjax import models
from dferjax.config import base_config, fold_splits
from dferjax.engine import checkpoints as ckpt
from dferjax.labels import BASIC_CLASSES

NAMES = list(BASIC_CLASSES[:3])  # happy, sad, neutral: a small problem keeps the hand sums short

# fold: (happy, sad, neutral, uar, war, epoch); neutral absent (None) from fold 2's test set.
FOLDS = {
    3: (0.70, 0.40, 0.60, 0.50, 0.65, 30),
    1: (0.80, 0.60, 0.40, 0.60, 0.70, 10),
    2: (0.90, 0.50, None, 0.70, 0.75, 20),
}


def _report(happy, sad, neutral, uar, war, epoch, groups=None):
    report = {"num_samples": 100, "war": war, "uar": uar,
              "per_class": {"happy": happy, "sad": sad, "neutral": neutral},
              "confusion": [[0] * 3] * 3, "class_names": NAMES, "epoch": epoch}
    if groups:
        report["groups"] = groups
    return report


def _write_run(run_dir, fold, values, dataset="dfew", names=NAMES, groups=None, variant="E"):
    run_dir.mkdir(parents=True)
    results = {"dataset": dataset, "fold": fold, "variant": variant,
               "split": f"fold{fold}" if fold is not None else "test", "class_names": names,
               "best": _report(*values, groups=groups),
               "last": _report(*(v * 0.5 if isinstance(v, float) else v for v in values), groups=groups)}
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


@pytest.fixture
def fold_runs(tmp_path):
    return [_write_run(tmp_path / "runs" / f"dfew-E-fold{f}", f, v) for f, v in FOLDS.items()]


def test_summary_rows_sorted_and_mean_is_hand_computed(fold_runs):
    summary = evaluate.kfold_summary(fold_runs)
    assert [row["fold"] for row in summary["rows"]] == [1, 2, 3]
    assert [row["epoch"] for row in summary["rows"]] == [10, 20, 30]
    assert summary["dataset"] == "dfew" and summary["which"] == "best"
    mean, std = summary["mean"], summary["std"]
    assert mean["num_runs"] == 3
    assert mean["per_class"]["happy"] == pytest.approx(0.80)       # (0.8 + 0.9 + 0.7) / 3
    assert mean["per_class"]["sad"] == pytest.approx(0.50)         # (0.6 + 0.5 + 0.4) / 3
    assert mean["per_class"]["neutral"] == pytest.approx(0.50)     # (0.4 + 0.6) / 2, fold 2 has none
    assert mean["uar"] == pytest.approx(0.60)                      # (0.6 + 0.7 + 0.5) / 3
    assert mean["war"] == pytest.approx(0.70)                      # (0.70 + 0.75 + 0.65) / 3
    assert std["uar"] == pytest.approx(0.10)                       # sample std of 0.6, 0.7, 0.5
    assert std["war"] == pytest.approx(0.05)
    assert std["per_class"]["neutral"] == pytest.approx(0.1414213562)  # sqrt(0.02 / 1)
    assert "groups" not in summary
    json.dumps(summary, allow_nan=False)


def test_summary_last_report(fold_runs):
    summary = evaluate.kfold_summary(fold_runs, which="last")
    assert summary["mean"]["war"] == pytest.approx(0.35)           # half of each best WAR


def test_markdown_has_expected_percentages(fold_runs):
    text = evaluate.format_markdown(evaluate.kfold_summary(fold_runs))
    assert "| Fold | happy | sad | neutral | UAR | WAR |" in text
    assert "| 1 | 80.00 | 60.00 | 40.00 | 60.00 | 70.00 |" in text
    assert "| 2 | 90.00 | 50.00 | - | 70.00 | 75.00 |" in text
    assert "| 3 | 70.00 | 40.00 | 60.00 | 50.00 | 65.00 |" in text
    assert "| **Mean** | 80.00 | 50.00 | 50.00 | 60.00 | 70.00 |" in text
    assert "| Std | 10.00 | 10.00 | 14.14 | 10.00 | 5.00 |" in text
    assert text.index("| 1 |") < text.index("| 2 |") < text.index("| 3 |") < text.index("**Mean**")


def test_mismatched_class_names_names_the_run(tmp_path, fold_runs):
    odd = _write_run(tmp_path / "runs" / "dfew-E-fold4", 4, FOLDS[1], names=["happy", "sad", "fear"])
    with pytest.raises(ValueError, match="dfew-E-fold4.*class_names"):
        evaluate.kfold_summary([*fold_runs, odd])


def test_mismatched_dataset_and_duplicate_fold(tmp_path, fold_runs):
    other = _write_run(tmp_path / "runs" / "mafw-E-fold4", 4, FOLDS[1], dataset="mafw")
    with pytest.raises(ValueError, match="mafw-E-fold4.*dataset"):
        evaluate.kfold_summary([*fold_runs, other])
    again = _write_run(tmp_path / "runs" / "dfew-E-fold1-again", 1, FOLDS[1])
    with pytest.raises(ValueError, match="fold 1 appears twice"):
        evaluate.kfold_summary([*fold_runs, again])


def test_missing_results_says_not_finished(tmp_path):
    run = tmp_path / "runs" / "dfew-E-fold5"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"dfew-E-fold5/results\.json.*not finished an evaluation"):
        evaluate.load_results(run)


def test_groups_summary_and_scene_table(tmp_path):
    # Two single-split runs (fold null), e.g. FERV39k with two seeds; run b has no AI scene.
    groups_a = {"AI": {"num_samples": 40, "war": 0.6, "uar": 0.3}, "DL": {"num_samples": 60, "war": 0.5, "uar": 0.4}}
    groups_b = {"DL": {"num_samples": 60, "war": 0.7, "uar": 0.6}}
    run_a = _write_run(tmp_path / "runs" / "ferv-a", None, FOLDS[1], dataset="ferv39k", groups=groups_a)
    run_b = _write_run(tmp_path / "runs" / "ferv-b", None, FOLDS[2], dataset="ferv39k", groups=groups_b)
    summary = evaluate.kfold_summary([run_b, run_a])
    assert [row["label"] for row in summary["rows"]] == ["ferv-a", "ferv-b"]
    dl, ai = summary["groups"]["DL"], summary["groups"]["AI"]
    assert dl["mean"]["war"] == pytest.approx(0.6)                  # (0.5 + 0.7) / 2
    assert dl["mean"]["uar"] == pytest.approx(0.5)                  # (0.4 + 0.6) / 2
    assert ai["mean"]["war"] == pytest.approx(0.6) and len(ai["rows"]) == 1
    text = evaluate.format_markdown(summary)
    assert "| Scene | Samples | UAR | WAR |" in text
    assert "| All | 100 | 65.00 | 72.50 |" in text                  # UAR (0.6+0.7)/2, WAR (0.70+0.75)/2
    assert "| AI | 40 | 30.00 | 60.00 |" in text
    assert "| DL | 60 | 50.00 | 60.00 |" in text


def test_cli_writes_summary_in_common_parent(tmp_path, fold_runs, capsys):
    (tmp_path / "runs" / "dfew-notes.txt").write_text("a file the shell glob also matched")
    args = ["--summary", *map(str, fold_runs), str(tmp_path / "runs" / "dfew-notes.txt")]
    assert evaluate.main(args) == 0
    out = capsys.readouterr().out
    assert "| **Mean** | 80.00 | 50.00 | 50.00 | 60.00 | 70.00 |" in out
    md = tmp_path / "runs" / "summary.md"
    saved = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert "| 2 | 90.00 | 50.00 | - | 70.00 | 75.00 |" in md.read_text()
    assert saved["mean"]["war"] == pytest.approx(0.70)
    assert [row["fold"] for row in saved["rows"]] == [1, 2, 3]


def test_cli_out_prefix_and_errors(tmp_path, fold_runs, capsys):
    prefix = tmp_path / "reports" / "dfew-E"
    assert evaluate.main(["--summary", *map(str, fold_runs), "--out", str(prefix), "--which", "last"]) == 0
    assert (tmp_path / "reports" / "dfew-E.md").is_file()
    assert json.loads((tmp_path / "reports" / "dfew-E.json").read_text())["which"] == "last"

    empty = tmp_path / "runs" / "dfew-E-fold9"
    empty.mkdir()
    assert evaluate.main(["--summary", str(empty)]) == 1
    assert "not finished an evaluation" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([])
    assert exit_info.value.code == 2
    assert "--summary" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Ablation table: runs of several settings (config.json + results.json written by hand)

HEADS = (12, 6, 8)                      # written out of order: rows come back sorted numerically


def _accuracies(heads: int, fold: int) -> tuple[float, float]:
    """A distinct (WAR, UAR) per run, so that a wrong grouping shows in the means."""
    return 0.5 + heads / 100 + fold / 1000, 0.3 + heads / 200 + fold / 500


def _write_config(run_dir, fold, heads, **changes):
    """config.json as train.py writes it: a DFEW config of the fold (as configs/dfew.py makes it), heads and
    other changes."""
    config = base_config(models.default_config())
    config.dataset, config.fold, config.variant, config.data.dir = "dfew", fold, "E", "data/dfew"
    config.data.train_splits, config.data.test_splits = fold_splits(fold)
    config.model.dfer.num_heads = heads
    for key, value in changes.items():
        section, name = key.rsplit(".", 1)
        node = config
        for part in section.split("."):
            node = node[part]
        node[name] = value
    ckpt.save_config(run_dir, config)


@pytest.fixture
def sweep(tmp_path):
    """num_heads x fold, each run in its own job folder: data.dir, runtime and the seed differ as on a cluster."""
    runs = []
    for heads in HEADS:
        for fold in (2, 1, 3):
            war, uar = _accuracies(heads, fold)
            run = _write_run(tmp_path / f"job{heads}{fold}" / f"dfew-h{heads}-fold{fold}", fold,
                             (0.5, 0.5, 0.5, uar, war, 10))
            _write_config(run, fold, heads, **{"data.dir": f"/scratch/job{heads}{fold}/dfew",
                                               "runtime.num_workers": fold, "train.seed": 0})
            runs.append(run)
    return runs


def test_ablation_table_has_one_row_per_setting_with_numpy_means(sweep):
    table = evaluate.ablation_table(sweep)
    assert table["keys"] == ["model.dfer.num_heads"] and table["compared"] == "config"
    assert table["folds"] == [1, 2, 3]
    assert [row["setting"] for row in table["rows"]] == [{"model.dfer.num_heads": h} for h in (6, 8, 12)]
    for row, heads in zip(table["rows"], (6, 8, 12)):
        assert row["num_runs"] == 3 and row["num_folds"] == 3 and len(row["runs"]) == 3
        assert [f["fold"] for f in row["per_fold"]] == [1, 2, 3]
        wars = [_accuracies(heads, fold)[0] for fold in (1, 2, 3)]
        uars = [_accuracies(heads, fold)[1] for fold in (1, 2, 3)]
        assert [f["war"] for f in row["per_fold"]] == pytest.approx(wars)
        assert row["mean"]["war"] == pytest.approx(float(np.mean(wars)))
        assert row["mean"]["uar"] == pytest.approx(float(np.mean(uars)))
    json.dumps(table, allow_nan=False)


def test_ablation_markdown_and_cli_json(sweep, tmp_path, capsys):
    prefix = tmp_path / "reports" / "heads"
    assert evaluate.main(["--summary", *map(str, sweep), "--out", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert ("| model.dfer.num_heads | F1 WAR | F1 UAR | F2 WAR | F2 UAR | F3 WAR | F3 UAR | Mean WAR | Mean UAR "
            "| Runs |") in out
    wars = [100 * _accuracies(8, fold)[0] for fold in (1, 2, 3)]
    uars = [100 * _accuracies(8, fold)[1] for fold in (1, 2, 3)]
    cells = [f"{v:.2f}" for pair in zip(wars, uars) for v in pair]
    assert f"| 8 | {' | '.join(cells)} | {np.mean(wars):.2f} | {np.mean(uars):.2f} | 3 |" in out
    assert out.index("| 6 |") < out.index("| 8 |") < out.index("| 12 |")
    saved = json.loads((tmp_path / "reports" / "heads.json").read_text())
    assert saved["kind"] == "ablation" and len(saved["ablation"]["rows"]) == 3
    assert (tmp_path / "reports" / "heads.md").read_text() == evaluate.format_markdown(saved)


def test_ablation_missing_fold_is_marked_and_repeats_average(sweep, tmp_path):
    # Fold 3 of heads 12 missing; a second seed of heads 6 fold 1 (a repeat, averaged with --ignore train.seed).
    table = evaluate.ablation_table([r for r in sweep if r.name != "dfew-h12-fold3"])
    twelve = table["rows"][-1]
    assert twelve["num_folds"] == 2 and twelve["mean"]["war"] == pytest.approx(
        float(np.mean([_accuracies(12, f)[0] for f in (1, 2)])))
    assert "* = mean over fewer folds" in evaluate.format_ablation(table)

    again = _write_run(tmp_path / "jobx" / "dfew-h6-fold1-seed1", 1, (0.5, 0.5, 0.5, 0.1, 0.2, 10))
    _write_config(again, 1, 6, **{"train.seed": 1})
    runs = [*sweep, again]
    assert evaluate.ablation_table(runs)["keys"] == ["model.dfer.num_heads", "train.seed"]
    table = evaluate.ablation_table(runs, ignore=["train.seed"])
    six = table["rows"][0]
    assert table["keys"] == ["model.dfer.num_heads"] and six["num_runs"] == 4
    assert six["per_fold"][0]["num_runs"] == 2
    assert six["per_fold"][0]["war"] == pytest.approx(np.mean([_accuracies(6, 1)[0], 0.2]))


def test_one_setting_keeps_the_kfold_summary_and_old_runs_compare_on_results(fold_runs, tmp_path):
    summary = evaluate.summarise(fold_runs)
    assert "kind" not in summary and summary["mean"]["war"] == pytest.approx(0.70)
    assert summary["ablation"]["compared"] == "results" and len(summary["ablation"]["rows"]) == 1
    # Runs without config.json (written before it) of two variants: a table by variant, not an error.
    other = [_write_run(tmp_path / "runs" / f"dfew-B-fold{f}", f, v, variant="B") for f, v in FOLDS.items()]
    summary = evaluate.summarise([*fold_runs, *other])
    assert summary["kind"] == "ablation" and summary["ablation"]["keys"] == ["variant"]
    assert [r["setting"]["variant"] for r in summary["ablation"]["rows"]] == ["B", "E"]
    assert summary["ablation"]["rows"][1]["mean"]["war"] == pytest.approx(0.70)
