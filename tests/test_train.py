"""Training end to end on a tiny synthetic set: results, checkpoints, resume after a kill, data
parallelism on 4 CPU devices, two processes under jax.distributed, divergence and config errors."""

from __future__ import annotations

import json
import os
import socket
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from dferjax import metrics, models, train
from dferjax.data import dataset, records, synthetic
from dferjax.data import input_pipeline as ip
from dferjax.data.clips import PrepConfig
from dferjax.engine import checkpoints as ckpt
from dferjax.engine import mesh as engine_mesh
from dferjax.engine.inputs import example_spec

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.py")

# The demo config (the tiny models) on 4 frames of 32x32 (a 2x2 feature map), batch 4.
TINY = ["--config.data.num_segments=2",
        *[f"--config.model.{name}.{key}={value}" for name in models.MODELS
          for key, value in (("num_frames", 4), ("image_size", 32))],
        "--config.train.batch_size=4", "--config.train.eval_batch_size=4", "--config.train.epochs=2",
        "--config.runtime.log_every=1", "--config.runtime.progress=False",
        "--config.runtime.cpu_devices=0"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_demo")
    synthetic.make_demo_set(out, num_train=16, num_test=7,
                            prep=PrepConfig(image_size=48, max_frames=8, min_frames=8), progress=False)
    return out


def tiny_args(shards: Path, workdir: Path, *extra: str) -> list[str]:
    return ["--config", DEMO, *TINY, f"--config.data.dir={shards}", "--workdir", str(workdir), *extra]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dferjax.train", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_two_processes(args: list[str], expected: int, env: dict[str, str] | None = None) -> list[str]:
    """``python -m dferjax.train ARGS`` as two processes on localhost (jax.distributed); asserts that both
    exit with ``expected`` and returns their outputs."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "dferjax.train", *args, "--coordinator", f"localhost:{port}",
                               "--num-processes", "2", "--process-id", str(i)],
                              cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == expected, out[-3000:]
    return outputs


def latest_state(workdir: Path) -> tuple[int, dict]:
    """The latest checkpoint's params and batch statistics as numpy arrays (on this one device)."""
    directory = workdir / ckpt.LATEST_DIR
    mngr = ckpt.manager(directory, max_to_keep=2, read_only=True)
    step = mngr.latest_step()
    mngr.close()
    params, rest, _ = ckpt.load_model_state(directory, step, ckpt.load_run_config(workdir))
    return step, jax.tree.map(np.asarray, {"params": params, "rest": rest})


def assert_trees_close(a, b, atol: float, rtol: float = 0.0) -> None:
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b):
        np.testing.assert_allclose(x, y, atol=atol, rtol=rtol, err_msg=jax.tree_util.keystr(path))


def train_losses(workdir: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if x["kind"] == "train"}


def test_training_writes_results_and_a_best_checkpoint_that_reproduces_them(shards, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir)) == 0
    out = capsys.readouterr().out
    assert "WAR" in out and "UAR" in out
    results = json.loads((workdir / "results.json").read_text())
    assert results["dataset"] == "synthetic" and results["best"]["num_samples"] == 7
    assert results["last"]["epoch"] == 2 and results["best"]["epoch"] in (1, 2)
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, 9))
    assert [x["epoch"] for x in lines if x["kind"] == "eval"] == [1, 2]
    assert (workdir / "confusion.png").stat().st_size > 1000
    assert any((workdir / "tb").iterdir())

    # Reload the best checkpoint and evaluate it with plain (unjitted-loop) model calls.
    model, config, meta = ckpt.load_model(workdir, which="best")
    assert meta["best"]["epoch"] == results["best"]["epoch"]
    spec = example_spec(config)
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    labels, predictions = [], []
    for i in range(len(source)):
        example = ip.record_example(source[i], spec, None)
        logits = model({"frames": example["frames"][None],
                        "heatmaps": example["heatmaps"][None].astype(np.float32)}).logits
        predictions.append(int(np.argmax(logits)))
        labels.append(int(example["label"]))
    report = metrics.report(labels, predictions, info["classes"])
    assert report["confusion"] == results["best"]["confusion"]

    # The evaluate command gives the same numbers from the checkpoint.
    from dferjax import evaluate
    assert evaluate.main(["--checkpoint", str(workdir)]) == 0
    written = json.loads((workdir / "eval-test.json").read_text())
    assert written["confusion"] == results["best"]["confusion"] and written["war"] == results["best"]["war"]
    assert (workdir / "eval-test-confusion.png").is_file()
    assert "WAR" in capsys.readouterr().out


def test_resume_after_kill_equals_straight_run(shards, tmp_path):
    """6 steps straight == 3 steps, SIGKILL, 3 resumed steps: same parameters, same data (losses)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main(tiny_args(shards, straight, "--config.train.max_steps=6")) == 0
    killed = run_cli(tiny_args(shards, resumed, "--config.train.max_steps=6", "--config.train.checkpoint_every=3"),
                     env={train.FAULT_ENV: "3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert ckpt.manager(resumed / ckpt.LATEST_DIR, 2, read_only=True).latest_step() == 3
    assert train.main(tiny_args(shards, resumed, "--config.train.max_steps=6",
                                "--config.train.checkpoint_every=3")) == 0
    step_a, state_a = latest_state(straight)
    step_b, state_b = latest_state(resumed)
    assert step_a == step_b == 6
    assert_trees_close(state_a, state_b, atol=0.0)
    assert train_losses(straight) == train_losses(resumed)


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(shards, tmp_path, capsys):
    workdir = tmp_path / "nan"
    # The learning rate jumps to 1e32 at epoch 2 (step 5): the parameters overflow; epoch 1 ends with a checkpoint at step 4.
    code = train.main(tiny_args(shards, workdir, "--config.train.lr_decay_epochs=(1,)",
                                "--config.train.lr_decay_factor=1e35"))
    assert code == 1
    err = capsys.readouterr().err
    assert "step 5" in err and "step 4" in err and "non-finite" in err
    step, state = latest_state(workdir)
    assert step == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))


@pytest.mark.parametrize("extra, message", [
    (["--config.train.nope=1"], "train.nope"),
    (["--config.model.num_classes=11"], "model.num_classes = 11"),
    (["--config.model.name=nope"], "known models: dfer, frame_mean"),
    (["--config.data.test_splits=('fold6',)"], "fold6"),
])
def test_bad_configs_fail_before_training(shards, tmp_path, capsys, extra, message):
    workdir = tmp_path / "bad"
    try:
        code = train.main(tiny_args(shards, workdir, *extra))
    except SystemExit as exit_:
        code = exit_.code
    assert code in (1, 2)
    assert message in capsys.readouterr().err
    assert not (workdir / ckpt.LATEST_DIR).exists()


def test_missing_shards_and_fold_6_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--config", str(ROOT / "configs" / "dfew.py:fold=6"), "--workdir", str(tmp_path / "w")])
    assert "fold must be 1-5" in capsys.readouterr().err
    code = train.main(["--config", str(ROOT / "configs" / "dfew.py:fold=2"), "--workdir", str(tmp_path / "w"),
                       f"--config.data.dir={tmp_path / 'no_shards'}"])
    assert code == 1
    err = capsys.readouterr().err
    assert "dataset_info.json" in err and "data.dir" in err and "data_prep" in err


def test_resuming_with_another_config_is_refused(shards, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    code = train.main(tiny_args(shards, workdir, "--config.train.max_steps=2", "--config.train.learning_rate=0.01"))
    assert code == 1
    assert "train.learning_rate" in capsys.readouterr().err


DATA_PARALLEL_SCRIPT = r"""
import json, sys, numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh
sys.path.insert(0, sys.argv[1])
from tests.conftest import tiny_config
from dferjax import models
from dferjax.engine import checkpoints as ckpt, mesh as engine_mesh, steps
assert len(jax.devices()) == 4, jax.devices()
# The widths this tolerance was measured at (Adam turns summation-order rounding on gradients near 0
# into steps of up to lr, so a wider model shows larger worst-case differences).
config = tiny_config(widths=(8, 8, 16, 16), node_dim=8, head_dim=8, mlp_dim=16, num_layers=2)
spec = models.input_spec(config.model)
B, N, S, h = 8, spec.num_frames, spec.image_size, spec.heatmap_size
rng = np.random.default_rng(0)
batches = [{"frames": rng.integers(0, 256, (B, N, S, S, 3), dtype=np.uint8),
            "heatmaps": rng.random((B, N, h, h, 18)).astype(np.float16),
            "label": rng.integers(0, 7, B).astype(np.int32), "valid": np.ones(B, bool)} for _ in range(2)]
results = {}
for name, devices in (("one", jax.devices()[:1]), ("four", jax.devices())):
    mesh = Mesh(np.asarray(devices), ("data",))
    graphdef, params, rest = ckpt.split_model(models.build_model(config.model, seed=0))
    tx = steps.make_optimizer(config, 10)
    state = engine_mesh.replicate(steps.initial_state(params, rest, tx), mesh)
    step = jax.jit(steps.make_train_step(graphdef, tx), donate_argnums=0)
    losses, grads = [], None
    for batch in batches:
        g = engine_mesh.to_global(batch, mesh)
        assert len(g["frames"].sharding.device_set) == len(devices)
        state, m = step(state, g)
        losses.append(float(m["loss"]))
    results[name] = (losses, jax.tree.map(np.asarray, {"params": state["params"], "rest": state["rest"]}))
one, four = results["one"], results["four"]
diff = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), one[1], four[1])
print(json.dumps({"loss_one": one[0], "loss_four": four[0], "max_param_diff": max(jax.tree.leaves(diff))}))
"""


def test_four_device_step_equals_single_device_step(tmp_path):
    """Two Adam train steps on a global batch of 8: 4-way sharded over 4 CPU devices vs one device.

    Tolerance: losses within 1e-6 relative, parameters and batch statistics within 1e-5 absolute
    (float32 sums in another order; measured 1.1e-6). This test found the jnp.max gradient problem
    documented in models/triplet_attention.z_pool (then 0.1 relative on the backbone's gradient).
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    result = subprocess.run([sys.executable, "-c", DATA_PARALLEL_SCRIPT, str(ROOT)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["loss_four"], out["loss_one"], rtol=1e-6)
    assert out["max_param_diff"] < 1e-5, out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_cpu_device_count_divides_the_batches():
    assert engine_mesh.cpu_device_count(0, 2, (8, 70)) == 0
    assert engine_mesh.cpu_device_count(3, 2, (8, 70)) == 3
    assert engine_mesh.cpu_device_count(-1, 2, (8, 70)) == 2
    assert engine_mesh.cpu_device_count(-1, 16, (8, 70)) == 2        # 70 = 2 x 5 x 7
    assert engine_mesh.cpu_device_count(-1, 16, (64, 64)) == 16
    assert engine_mesh.cpu_device_count(-1, 3, (64, 64)) == 2
    assert engine_mesh.cpu_device_count(-1, 1, (64, 64)) == 1


def test_cpu_devices_split_the_host(shards, tmp_path):
    """runtime.cpu_devices=2 trains data parallel over two CPU devices of one process."""
    done = run_cli(tiny_args(shards, tmp_path / "run", "--config.runtime.cpu_devices=2", "--config.train.max_steps=2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 process(es), 2 cpu device(s)" in done.stdout


def test_frame_mean_baseline_is_selected_by_name_and_trained_by_the_same_engine(shards, tmp_path, capsys):
    """--config.model.name=frame_mean: the registry's second model trains, evaluates and reloads through
    the same engine; it takes no heat-maps, so none are rendered for it."""
    workdir = tmp_path / "frame_mean"
    assert train.main(tiny_args(shards, workdir, "--config.model.name=frame_mean")) == 0
    results = json.loads((workdir / ckpt.RESULTS_FILE).read_text())
    assert results["model"] == "frame_mean" and results["best"]["num_samples"] == 7
    model, config, _ = ckpt.load_model(workdir)
    assert isinstance(model, models.FrameMeanModel)
    spec = example_spec(config)
    assert spec.heatmap_size is None
    info = dataset.read_info(shards)
    source = records.ShardedDataSource(dataset.split_shards(shards, info, ["test"], "data.test_splits"))
    example = ip.record_example(source[0], spec, None)
    assert "heatmaps" not in example
    # The logits against an independent computation from the same weights: NumPy mean over frames of
    # the backbone's spatially pooled maps, times the head's kernel plus bias.
    maps = np.asarray(model.backbone(example["frames"], train=False), np.float64)
    embedding = maps.mean(axis=(1, 2)).mean(axis=0)
    expected = embedding @ np.asarray(model.head.kernel[...], np.float64) + np.asarray(model.head.bias[...])
    logits = np.asarray(model({"frames": example["frames"][None]}).logits[0])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_checkpoint_of_another_model_is_refused_naming_what_differs(shards, tmp_path):
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    config = ckpt.load_run_config(workdir)
    config.model.dfer.node_dim = 16
    with pytest.raises(ckpt.CheckpointError, match="gcn.*16.*model.dfer.node_dim: 32 != 16"):
        ckpt.load_model(workdir, config)
    config = ckpt.load_run_config(workdir)
    config.model.dfer.num_heads = 4                  # 4 x 16 = 64 wide attention: other q/k/v shapes
    with pytest.raises(ckpt.CheckpointError, match="model.dfer.num_heads: 2 != 4"):
        ckpt.load_model(workdir, config)
    config = ckpt.load_run_config(workdir)
    config.model.dtype = "bfloat16"                  # the compute dtype: the same parameters
    model, _, _ = ckpt.load_model(workdir, config)
    assert isinstance(model, models.DFERModel)


def test_runtime_keys_may_change_on_resume(shards, tmp_path):
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=2", "--config.runtime.log_every=2",
                                "--config.runtime.cache_decoded=True")) == 0
    assert latest_state(workdir)[0] == 2


def test_a_run_made_before_keys_were_added_resumes_with_them_at_their_defaults(shards, tmp_path):
    """A run whose config.json lacks data keys added since (the augmentations, off by default) resumes."""
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    values = json.loads((workdir / ckpt.CONFIG_FILE).read_text())
    for key in ("crop_padding", "padding_mode", "color_jitter", "random_erasing", "erasing_scale",
                "erasing_ratio", "erasing_value"):
        del values["data"][key]
    (workdir / ckpt.CONFIG_FILE).write_text(json.dumps(values))
    assert ckpt.load_run_config(workdir).data.crop_padding == 0
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=2")) == 0
    assert latest_state(workdir)[0] == 2
    # A model key added since (Eq. 2's heat-map normalisation) loads at what the run computed, "peak"; today's
    # default differs, so resuming says so, and resumes with the run's value.
    values = json.loads((workdir / ckpt.CONFIG_FILE).read_text())
    for key in models.DFERModel.ADDED_KEYS:
        del values["model"]["dfer"][key]
    (workdir / ckpt.CONFIG_FILE).write_text(json.dumps(values))
    assert ckpt.load_run_config(workdir).model.dfer.heatmap_norm == "peak"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=3")) == 1
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=3",
                                "--config.model.dfer.heatmap_norm=peak")) == 0
    assert latest_state(workdir)[0] == 3


def test_a_run_made_before_the_registry_loads_in_todays_layout(shards, tmp_path):
    """config.json in the layout of runs made before the model registry (the paper's model's settings
    directly under ``model``) is read as ``model.dfer``; its checkpoint loads as before."""
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    new = json.loads((workdir / ckpt.CONFIG_FILE).read_text())
    old = json.loads(json.dumps(new))
    dfer = old["model"].pop("dfer")
    for name in models.MODELS:                       # the registry's other sections did not exist then
        old["model"].pop(name, None)
    old["model"].pop("name")
    old["data"]["image_size"], old["data"]["heatmap_sigma"] = dfer.pop("image_size"), dfer.pop("heatmap_sigma")
    old["loss"] = {"aux_weight": dfer.pop("aux_weight")}
    old["model"].update(dfer)
    runtime = old.pop("runtime")
    old["train"].update(progress=runtime["progress"], log_every=runtime["log_every"], cpu_devices=runtime["cpu_devices"])
    old["data"].update(num_workers=runtime["num_workers"], cache_decoded=runtime["cache_decoded"])
    (workdir / ckpt.CONFIG_FILE).write_text(json.dumps(old))
    config = ckpt.load_run_config(workdir)
    assert config.model.name == "dfer" and config.model.dfer.image_size == 32 and config.model.dfer.aux_weight == 0.2
    assert config.runtime.log_every == 1 and "loss" not in config and "image_size" not in config.data
    for key, value in new["model"]["dfer"].items():
        assert ckpt._tuples(config.model.dfer[key]) == ckpt._tuples(value), key
    model, _, _ = ckpt.load_model(workdir)
    assert isinstance(model, models.DFERModel)


def test_an_interrupted_save_is_named_and_the_newest_complete_step_used(shards, tmp_path, capsys):
    """cases/interrupted_save, generated: the newest step lost its commit markers and an array folder
    (the machine went down while it was written). predict and evaluate use the step before it, saying
    so in one line; the run resumes from there on another device count (not part of a run's identity)."""
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=6",
                                "--config.train.checkpoint_every=3")) == 0
    latest = workdir / ckpt.LATEST_DIR
    assert sorted(int(p.name) for p in latest.iterdir()) == [4, 6]
    for marker in (latest / "6" / ckpt.COMMIT_MARKER, latest / "6" / "state" / ckpt.COMMIT_MARKER):
        marker.unlink()
    shutil.rmtree(latest / "6" / "state" / "d")
    capsys.readouterr()

    assert ckpt.find_checkpoint(workdir, "latest")[2] == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{latest / '6'} is incomplete" in err and "using step 4" in err
    with pytest.raises(ckpt.CheckpointError, match="is incomplete"):
        ckpt.find_checkpoint(latest / "6")
    from dferjax import evaluate
    assert evaluate.main(["--checkpoint", str(workdir), "--which", "last"]) == 0

    resumed = run_cli(tiny_args(shards, workdir, "--config.train.max_steps=8", "--config.train.checkpoint_every=3",
                                "--config.runtime.cpu_devices=2"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "set aside as 6.incomplete" in resumed.stderr and "from step 4" in resumed.stdout
    assert "2 cpu device(s)" in resumed.stdout and "Traceback" not in resumed.stderr
    assert (latest / "6.incomplete").is_dir() and latest_state(workdir)[0] == 8


def test_a_truncated_shard_stops_training_before_it_starts(shards, tmp_path, capsys):
    """cases/truncated_shard, generated: a copy of the shards with one cut to 60% (its index whole):
    train and evaluate stop in one line naming the shard and the repair, before the first step."""
    damaged = tmp_path / "shards"
    shutil.copytree(shards, damaged)
    shard = damaged / "train-00000.tfrecord"
    shard.write_bytes(shard.read_bytes()[: int(shard.stat().st_size * 0.6)])
    code = train.main(tiny_args(damaged, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"shard {shard} is truncated" in err and "data_prep" in err
    assert not (tmp_path / "run" / ckpt.LATEST_DIR).exists()


@pytest.mark.parametrize("extra, message", [
    (["--config.fold=3"], "config key fold = 3 does not match data.test_splits"),
    (["--config.train.batch_size=0"], "train.batch_size = 0 is not an integer of at least 1"),
    (["--config.train.epochs=0"], "train.epochs = 0 is not an integer of at least 1"),
    (["--config.data.num_segments=0"], "data.num_segments = 0 is not an integer of at least 1"),
    (["--config.model.dfer.image_size=0"], "model.dfer.image_size = 0 is not a positive integer"),
    (["--config.data.frames_per_segment=1"], "data.num_segments x data.frames_per_segment = 2 frames"),
    (["--config.train.learning_rate=0.0"], "train.learning_rate = 0.0 is not positive"),
    (["--config.variant=F"], "config key variant = 'F' is not one of"),
    (["--config.model.dfer.widths=(8,16)"], "model.dfer.widths = (8, 16) is not 4 positive integers"),
    (["--config.model.dfer.num_heads=-1"], "model.dfer.num_heads = -1 is not a positive integer"),
    (["--config.model.num_classes=0"], "model.num_classes = 0 is not an integer of at least 2"),
    (["--config.model.name=frame_mean", "--config.model.frame_mean.widths=(3,)"], "model.frame_mean.widths"),
])
def test_values_that_would_fail_deep_inside_or_relabel_a_run_are_refused_first(shards, tmp_path, capsys, extra,
                                                                               message):
    with pytest.raises(SystemExit) as exit_:
        train.main(tiny_args(shards, tmp_path / "run", *extra))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_registering_a_model_leaves_existing_runs_resumable(shards, tmp_path, monkeypatch):
    """Other models' sections are not part of a run's identity: a run resumes after a new model is
    registered (its section appears in the config) or another model's defaults change."""
    workdir = tmp_path / "run"
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=1")) == 0
    monkeypatch.setitem(models.MODELS, "frame_max", models.FrameMeanModel)
    assert train.main(tiny_args(shards, workdir, "--config.train.max_steps=2",
                                "--config.model.frame_mean.widths=(8,8,8,8)")) == 0
    assert latest_state(workdir)[0] == 2


def test_a_flipped_byte_in_a_shard_stops_training_before_it_starts(shards, tmp_path, capsys):
    """A shard of the right size with one byte changed (its CRC fails): caught by the start-up check,
    one line naming shard and record, no checkpoint directory made."""
    damaged = tmp_path / "shards"
    shutil.copytree(shards, damaged)
    shard = damaged / "test-00000.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    code = train.main(tiny_args(damaged, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"shard {shard} is damaged" in err and "CRC" in err and "data_prep" in err
    assert not (tmp_path / "run" / ckpt.LATEST_DIR).exists()


def metrics_lines(workdir: Path) -> list[dict]:
    """metrics.jsonl without its timings."""
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k != "samples_per_s"} for x in lines]


@pytest.fixture(scope="module")
def straight_run(shards, tmp_path_factory):
    """Two whole epochs (8 steps, evaluated after each), uninterrupted."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    assert train.main(tiny_args(shards, workdir)) == 0
    return workdir


@pytest.mark.parametrize("stop_after", [3, 4])
def test_sigterm_saves_and_the_same_command_resumes_to_the_straight_run(shards, straight_run, tmp_path, stop_after):
    """SIGTERM after step 3 (mid-epoch) or 4 (the epoch's last step, before its evaluation): the run
    saves, says so in one line and exits 75; the same command then ends with the uninterrupted run's
    parameters bit for bit, the same log lines (no step lost or repeated) and the same results."""
    workdir = tmp_path / "run"
    stopped = run_cli(tiny_args(shards, workdir), env={train.SIGNAL_ENV: str(stop_after)})
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert f"stopped at step {stop_after}" in stopped.stderr and "Traceback" not in stopped.stderr
    assert "run the same command to resume" in stopped.stderr
    assert ckpt.complete_steps(workdir / ckpt.LATEST_DIR)[0] == stop_after
    assert [x["step"] for x in metrics_lines(workdir)] == list(range(1, stop_after + 1))   # no eval yet
    resumed = run_cli(tiny_args(shards, workdir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step_a, state_a = latest_state(straight_run)
    step_b, state_b = latest_state(workdir)
    assert step_a == step_b == 8
    assert_trees_close(state_a, state_b, atol=0.0)
    assert metrics_lines(workdir) == metrics_lines(straight_run)
    a, b = (json.loads((w / "results.json").read_text()) for w in (straight_run, workdir))
    assert a["best"] == b["best"] and a["last"] == b["last"]


def test_a_second_run_in_a_locked_workdir_is_refused_while_the_first_completes(shards, tmp_path, capsys):
    workdir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "dferjax.train", *tiny_args(shards, workdir)], cwd=ROOT,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lock = workdir / ".dferjax.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, "the first run ended before the test could start the second"
    code = train.main(tiny_args(shards, workdir))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"--workdir {workdir} is in use by process {first.pid}" in err
    out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out[-3000:]
    lines = metrics_lines(workdir)
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 4, 5, 6, 7, 8, 8]     # one run's lines, in order
    assert train.main(tiny_args(shards, workdir)) == 0                       # the lock was released


def test_a_failed_save_stops_the_run_in_one_line_and_leaves_it_resumable(shards, straight_run, tmp_path):
    """After step 4's checkpoint the kernel refuses to grow a file past 1 MB (as a full disk would):
    the next save (step 6) fails; the run stops with one line naming the file, the reason, the free
    space and the last complete checkpoint; results.json never names a best epoch without its
    checkpoint; the same command without the limit finishes like the uninterrupted run."""
    workdir = tmp_path / "run"
    args = tiny_args(shards, workdir, "--config.train.checkpoint_every=2")
    failed = run_cli(args, env={train.FILE_SIZE_ENV: "4:1000000"})
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1, failed.stderr[-3000:]
    assert "File too large" in failed.stderr and "GiB free there" in failed.stderr
    assert "the last complete checkpoint is step 4" in failed.stderr
    results = json.loads((workdir / "results.json").read_text())
    best_step = ckpt.complete_steps(workdir / ckpt.BEST_DIR)[0]
    assert best_step == 4 * results["best"]["epoch"]
    best_meta = ckpt.restore_meta(ckpt.manager(workdir / ckpt.BEST_DIR, 1, read_only=True), best_step)
    assert (best_meta["epoch"], best_meta["position"]) == (results["best"]["epoch"], 0)   # its own step's place
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step_a, state_a = latest_state(straight_run)
    step_b, state_b = latest_state(workdir)
    assert step_a == step_b == 8
    assert_trees_close(state_a, state_b, atol=0.0)


def test_the_checkpoint_space_is_checked_before_each_save(tmp_path):
    state = {"w": np.zeros((1024, 1024), np.float32)}        # 4 MiB
    assert ckpt.save_problem(tmp_path, state) is None
    free = shutil.disk_usage(tmp_path).free
    huge = {"w": jax.ShapeDtypeStruct((free // 4 + 2**20,), np.float32)}
    problem = ckpt.save_problem(tmp_path / "checkpoints", huge)
    assert problem.startswith(f"{tmp_path / 'checkpoints'} has") and "a checkpoint needs about" in problem


def test_a_workdir_that_is_a_file_is_refused_in_one_line(shards, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.write_text("not a folder")
    assert train.main(tiny_args(shards, workdir)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--workdir {workdir} is a file, not a folder" in err


def test_the_variant_follows_the_switches_and_an_override_applies_them():
    from dferjax.config import load_config
    config = load_config("configs/dfew.py:variant=E", ["model.dfer.gcn=False"])
    train.check_labels(config)
    assert config.variant == "D"                      # E without the GCN is Table 9's D, not a relabelled E
    config = load_config("configs/dfew.py:variant=E", ["variant=A"])
    train.check_labels(config, variant_given=True)
    assert config.variant == "A" and (config.model.dfer.gcn, config.model.dfer.temporal) == (False, "none")
    config = load_config("configs/dfew.py", ["model.dfer.fusion=mean"])
    train.check_labels(config)
    assert config.variant == ""                       # an ablation of its own (Table 10), no Table 9 label


def _relabel(shard: Path, record: int, label: int) -> None:
    """Rewrite ``shard`` (valid CRCs, a new index) with one record's label changed."""
    datas = list(records.iter_records(shard))
    example = records.decode_example(datas[record])
    example["label"] = label
    datas[record] = records.encode_example(example)
    with records.ShardWriter(shard) as writer:
        for data in datas:
            writer.write(data)


def test_a_label_outside_the_classes_is_named_with_shard_record_and_clip(shards, tmp_path, capsys):
    """A training record with label 9 of 7 classes (valid CRCs): met while training, the run stops in
    one line naming the shard, the record and its clip (from the manifest); in the test split the
    start-up check names it before any step."""
    for split, record in (("train", 5), ("test", 2)):
        copy = tmp_path / split
        shutil.copytree(shards, copy)
        shard = copy / f"{split}-00000.tfrecord"
        _relabel(shard, record, 9)
        clip = [json.loads(x) for x in (copy / "manifest.jsonl").read_text().splitlines()
                if json.loads(x).get("shard") == shard.name and json.loads(x).get("record") == record][0]
        code = train.main(tiny_args(copy, tmp_path / f"run-{split}"))
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"shard {shard}, record {record} (clip {clip['clip_id']}" in err
        assert "label 9 is not one of the 7 classes" in err


def test_a_record_damaged_after_the_start_up_check_is_found_and_named(shards, tmp_path):
    """The pipeline reads ahead in threads, so its error does not say which record; the record is found
    again, and named with its clip from the manifest."""
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    from dferjax.config import load_config
    config = load_config(DEMO, [a[len("--config."):] for a in TINY if a.startswith("--config.")])
    spec = example_spec(config)
    source = records.ShardedDataSource(copy / "train-00000.tfrecord")
    shard, offsets = source.shards[0], records.read_index(records.index_path(copy / "train-00000.tfrecord"))[0]
    data = bytearray(Path(shard).read_bytes())
    data[int(offsets[6][0]) + 40] ^= 0xFF                     # inside record 6's data
    Path(shard).write_bytes(bytes(data))
    error = train.describe_record_error(source, np.arange(len(source)), spec, str(copy))
    assert f"shard {shard}, record 6 (clip " in str(error) and "CRC" in str(error) and "data_prep" in str(error)
    assert train.describe_record_error(source, np.arange(6), spec, str(copy)) is None


def test_two_processes_stop_together_on_sigterm_and_match_one_process(shards, straight_run, tmp_path):
    """Two processes on localhost (jax.distributed, CPU collectives). Both get SIGTERM after their step 3 (a
    scheduler signals every process of a job): JAX's preemption sync point makes them save the same step and
    both exit 75. Resumed to the end, the run is the one-process run's: the same losses (float32 rounding)
    and parameters within what two devices' summation order gives through Adam."""
    workdir = tmp_path / "run"
    outputs = run_two_processes(tiny_args(shards, workdir), expected=75, env={train.SIGNAL_ENV: "3"})
    step = ckpt.complete_steps(workdir / ckpt.LATEST_DIR)[0]
    assert step >= 3 and all(f"stopped at step {step}" in out for out in outputs)
    assert "2 process(es), 2 cpu device(s)" in outputs[0]
    # Resumed to the end, through both epochs' evaluations and best saves (the two checkpoint managers
    # save the same steps: their barriers must not meet each other's).
    run_two_processes(tiny_args(shards, workdir), expected=0)
    assert ckpt.complete_steps(workdir / ckpt.LATEST_DIR)[0] == 8
    assert [x["epoch"] for x in metrics_lines(workdir) if x["kind"] == "eval"] == [1, 2]
    losses_a, losses_b = train_losses(straight_run), train_losses(workdir)
    np.testing.assert_allclose([losses_b[s] for s in range(1, 9)], [losses_a[s] for s in range(1, 9)], rtol=1e-4)
    np.testing.assert_allclose([losses_b[s] for s in (1, 2)], [losses_a[s] for s in (1, 2)], rtol=1e-5)
    # Two devices sum the gradient in another order. Adam's step lr * m / sqrt(v) turns that rounding into up
    # to +-lr on a weight whose gradient is ~0, so: nearly every element within 1e-5 (measured: all, the
    # largest 6e-6), none further than 8 steps x 2 lr.
    _, state_a = latest_state(straight_run)
    _, state_b = latest_state(workdir)
    lr = 1e-3
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(state_a), jax.tree.leaves(state_b)):
        diff = np.abs(a - b)
        assert diff.max() <= 16 * lr, jax.tree_util.keystr(path)
        assert (diff > 1e-5).sum() <= max(1, 0.005 * diff.size), jax.tree_util.keystr(path)   # 1 of a small one


def test_a_demo_set_of_other_counts_is_used_with_a_note_and_one_epoch_keeps_its_learning_rate(shards, capsys):
    """A new user's quick try: data.dir holds a synthetic set drawn with other counts than the config's
    train=/test= (16 / 7 at 48 px here): it is used as it is and one line says so and how to draw the other;
    one epoch (or two of the still-image demo) trains at the configured learning rate, not a decayed one."""
    from dferjax.config import config_file_module
    demo = config_file_module(DEMO).get_config("train=140,test=70,epochs=1")
    demo.data.dir = str(shards)
    train.build_demo_set(demo)
    out = capsys.readouterr().out           # with the run's other progress lines; stderr keeps errors only
    assert f"{shards} holds a synthetic set of 16 train / 7 test samples at 48 px" in out
    assert "asks for 140 / 70 at 64 px" in out and "--config.data.dir=" in out and out.count("\n") == 1
    assert tuple(demo.train.lr_decay_epochs) == ()
    images = config_file_module(str(ROOT / "configs" / "demo_images.py"))
    assert tuple(images.get_config("epochs=2").train.lr_decay_epochs) == ()
    assert tuple(config_file_module(DEMO).get_config("epochs=10").train.lr_decay_epochs) == (9,)
