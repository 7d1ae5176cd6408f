"""Train and evaluate the model: ``python -m dferjax.train --config configs/dfew.py:fold=1 --workdir runs/dfew-1``.

Section 4.2 of the paper: batch 64, 80 epochs, Adam (b1 0.9, b2 0.99), learning rate 1e-3 times 0.1 at
epochs 40 and 60, the loss of Eq. (13); evaluated on the test split after every epoch, the best epoch
chosen by WAR as the peers do. All of these are config values (dferjax/config.py).

Data parallel (DESIGN.md): one ``jax.sharding.Mesh`` over every device of every process with a single
``data`` axis; the global batch is sharded over it, the train state is replicated, and the jitted step
donates the old state. XLA inserts the gradient all-reduce, and batch norm sees the whole global batch,
so the step is the same computation as on one device. Several hosts: ``jax.distributed.initialize``
runs when a cluster is detected or ``--coordinator/--num-processes/--process-id`` are given; each
process reads its own slice of every global batch (input_pipeline.TrainData).

Checkpoints (orbax, dferjax.checkpoints): the latest ones every ``train.checkpoint_every`` steps and at
each epoch's end, and the best by WAR; each holds the data position, so running the same command
again resumes where the run stopped, with the same data order. A step whose loss is not finite is
not applied; the run stops at the next check, says where, and keeps the last good checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from dferjax import checkpoints as ckpt
from dferjax import input_pipeline as ip
from dferjax import metrics, records
from dferjax.config import add_config_arguments, parse_args_with_config
from dferjax.labels import class_names as default_class_names
from dferjax.models import build_model
from dferjax.models.loss import dfer_loss

FAULT_ENV = "DFERJAX_KILL_AFTER_CHECKPOINT"
"""Fault injection for tests: SIGKILL the process right after the checkpoint of this step is written."""


class TrainingError(RuntimeError):
    """The run cannot go on (diverged loss, inconsistent workdir)."""


# --- distribution -------------------------------------------------------------------------------

def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """``jax.distributed.initialize`` when several processes are asked for or a cluster is detected.

    Explicit arguments win; otherwise JAX's own environment variables (JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID) or a SLURM / Open MPI job of more than one task trigger JAX's
    cluster auto-detection. A single process on one machine is left alone.
    """
    env = os.environ
    cluster = (int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
               or "JAX_COORDINATOR_ADDRESS" in env)
    if not (coordinator or (num_processes or 1) > 1 or cluster):
        return False
    num_processes = num_processes or (int(env["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in env else None)
    if process_id is None and "JAX_PROCESS_ID" in env:
        process_id = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def make_mesh() -> Mesh:
    """All devices of all processes on one ``data`` axis."""
    return Mesh(np.asarray(jax.devices()), ("data",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a host-identical pytree fully replicated over the mesh (works across processes)."""
    sharding = NamedSharding(mesh, P())

    def place(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree)


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of a batch -> global arrays sharded on the data axis."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


# --- the optimizer and the steps ----------------------------------------------------------------

def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """lr x factor at each epoch in train.lr_decay_epochs (section 4.2: x0.1 at 40 and 60)."""
    t = config.train
    return optax.piecewise_constant_schedule(
        t.learning_rate, {int(e) * steps_per_epoch: t.lr_decay_factor for e in t.lr_decay_epochs})


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam (b1, b2 of train.*) as PyTorch's: optional L2 weight decay added to the gradient first."""
    t = config.train
    parts = [optax.add_decayed_weights(t.weight_decay)] if t.weight_decay else []
    parts += [optax.scale_by_adam(b1=t.b1, b2=t.b2, eps=1e-8),
              optax.scale_by_learning_rate(learning_rate_schedule(config, steps_per_epoch))]
    return optax.chain(*parts)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, aux_weight: float):
    """state, batch -> new state, step metrics.

    A step whose loss, gradient or updated parameters are not finite leaves the state as it was and
    reports ``ok`` False (checked on the host every train.log_every steps, not inside the step).
    """

    def step(state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        def loss_fn(params):
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            outputs = model(batch["frames"], batch["heatmaps"], train=True)
            loss, parts = dfer_loss(outputs, batch["label"], aux_weight)
            return loss, (parts, nnx.as_pure(nnx.state(model, nnx.Not(nnx.Param))), outputs.logits)

        (loss, (parts, rest, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        ok = (jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
              & jnp.isfinite(optax.tree.norm(params)))
        new = {"step": state["step"] + 1, "params": params, "rest": rest, "opt_state": opt_state}
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        correct = jnp.sum(jnp.argmax(logits, -1) == batch["label"])
        return new, {"loss": loss, **parts, "correct": correct, "ok": ok}

    return step


def make_eval_step(graphdef: nnx.GraphDef):
    """state, batch -> logits (B, K), the clip embedding (B, d) and the labels, in eval mode."""

    def step(state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
        outputs = model(batch["frames"], batch["heatmaps"], train=False)
        return {"logits": outputs.logits, "embedding": outputs.embedding, "label": batch["label"],
                "valid": batch["valid"]}

    return step


def jit_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, aux_weight: float, mesh: Mesh):
    """``make_train_step`` jitted for ``mesh``: replicated state (donated), batch sharded on ``data``."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(make_train_step(graphdef, tx, aux_weight), in_shardings=(replicated, sharded),
                   out_shardings=(replicated, replicated), donate_argnums=0)


def jit_eval_step(graphdef: nnx.GraphDef, mesh: Mesh):
    """``make_eval_step`` jitted for ``mesh``: replicated state, batch sharded on ``data``."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(make_eval_step(graphdef), in_shardings=(replicated, sharded), out_shardings=replicated)


# --- the run ------------------------------------------------------------------------------------

class Logger:
    """metrics.jsonl and TensorBoard (process 0 only); lines past ``resume_step`` are dropped on resume."""

    def __init__(self, workdir: Path, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = workdir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(k + "\n" for k in kept))
        try:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(workdir / "tb"), purge_step=resume_step or None)
        except ImportError:
            print("note: tensorboardX is not installed; TensorBoard files are not written "
                  "(pip install tensorboardX)", file=sys.stderr)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("kind", "epoch", "step") and isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def prepare_data(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Check the shards against the config before anything trains; build the demo set if asked."""
    data_dir = Path(config.data.dir)
    if not config.data.dir:
        raise ip.DataConfigError("config key data.dir is empty: set it to a directory of shards from data_prep")
    if "synthetic" in config and not (data_dir / ip.INFO_FILE).is_file():
        from data_prep.synthetic import make_demo_set
        from dferjax.clips import PrepConfig
        s = config.synthetic
        print(f"building the synthetic demo set in {data_dir} ...", flush=True)
        make_demo_set(data_dir, num_train=s.num_train, num_test=s.num_test, seed=s.seed,
                      prep=PrepConfig(image_size=s.image_size, max_frames=s.max_frames,
                                      min_frames=min(s.max_frames, 16)),
                      workers=s.workers, progress=config.train.progress)
    info = ip.read_info(data_dir)
    ip.check_classes(info, config.model.num_classes, data_dir)
    spec = ip.InputSpec.from_config(config)
    train = records.ShardedDataSource(ip.split_shards(data_dir, info, config.data.train_splits,
                                                      "data.train_splits"))
    test = records.ShardedDataSource(ip.split_shards(data_dir, info, config.data.test_splits,
                                                     "data.test_splits"))
    return {"info": info, "spec": spec, "train": train, "test": test}


def test_metadata(source: records.ShardedDataSource) -> dict[str, list]:
    """clip_id, label and scene of every test record, in record order."""
    out: dict[str, list] = {"clip_id": [], "label": [], "scene": []}
    for i in range(len(source)):
        header = records.decode_example(source[i])
        for key in out:
            out[key].append(header[key])
    return out


def evaluate(eval_step, state: Any, data: ip.EvalData, mesh: Mesh, meta: dict[str, list],
             class_names: list[str], progress: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """metrics.report over the whole test split, and the clip embeddings and logits in record order."""
    num = len(data.source)
    logits = np.zeros((num, len(class_names)), np.float32)
    embeddings = None
    per_process = [data.indices(p) for p in range(data.process_count)]
    batches = ip.prefetch(iter(data.dataset()), 2, lambda b: to_global(b, mesh))
    b = data.local_batch
    for s, batch in enumerate(tqdm(batches, total=data.steps, desc="eval", leave=False, disable=not progress)):
        out = jax.device_get(eval_step(state, batch))
        order = np.concatenate([idx[s * b:(s + 1) * b] for idx in per_process])
        keep = order >= 0
        if embeddings is None:
            embeddings = np.zeros((num, out["embedding"].shape[-1]), np.float32)
        logits[order[keep]] = out["logits"][keep]
        embeddings[order[keep]] = out["embedding"][keep]
    labels = np.asarray(meta["label"])
    groups = meta["scene"] if any(meta["scene"]) else None
    report = metrics.report(labels, metrics.from_logits(logits), class_names, groups=groups)
    return report, embeddings, logits


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """The whole run; returns results.json's content. Resumes from ``workdir`` if it holds a run."""
    workdir = Path(workdir)
    t = config.train
    data = prepare_data(config)
    process, processes = jax.process_index(), jax.process_count()
    main_process = process == 0
    mesh = make_mesh()
    if t.batch_size % len(jax.devices()) or t.eval_batch_size % len(jax.devices()):
        raise ip.DataConfigError(f"train.batch_size ({t.batch_size}) and train.eval_batch_size "
                                 f"({t.eval_batch_size}) must be multiples of the {len(jax.devices())} devices")
    spec = data["spec"]
    cache = bool(config.data.cache_decoded)
    if cache and config.data.num_workers:
        print("note: data.cache_decoded keeps decoded frames in this process; with data.num_workers > 0 "
              "each worker decodes afresh every epoch (set data.num_workers = 0 to use the cache)", flush=True)
    train_data = ip.TrainData(data["train"], spec, t.batch_size, seed=t.seed, process_index=process,
                              process_count=processes, num_workers=config.data.num_workers, cache=cache)
    eval_data = ip.EvalData(data["test"], spec, t.eval_batch_size, process_index=process,
                            process_count=processes, num_workers=config.data.num_workers, cache=cache)
    class_names = list(data["info"].get("classes") or default_class_names(config.model.num_classes))
    test_meta = test_metadata(data["test"])
    steps_per_epoch = train_data.steps_per_epoch
    total_steps = steps_per_epoch * t.epochs
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)

    # Model, optimizer and state.
    model = build_model(config.model, seed=t.seed)
    if config.model.backbone_weights:
        from dferjax.models.pretrained import init_backbone_from
        init_backbone_from(model, config.model.backbone_weights)
    graphdef, params, rest = ckpt.split_model(model)
    if t.init_checkpoint:
        run_dir, directory, step = ckpt.find_checkpoint(t.init_checkpoint, "best")
        ckpt.check_same_model(ckpt.load_run_config(run_dir), config, str(run_dir))
        params, rest, _ = ckpt.load_model_state(directory, step, config)
        print(f"initialised from {directory / str(step)}")
    tx = make_optimizer(config, steps_per_epoch)
    state = {"step": np.int32(0), "params": params, "rest": rest, "opt_state": tx.init(params)}
    state = replicate(state, mesh)
    train_step = jit_train_step(graphdef, tx, config.loss.aux_weight, mesh)
    eval_step = jit_eval_step(graphdef, mesh)

    # Resume.
    saved_config = workdir / ckpt.CONFIG_FILE
    latest = ckpt.manager(workdir / ckpt.LATEST_DIR, max_to_keep=2)
    best_mngr = ckpt.manager(workdir / ckpt.BEST_DIR, max_to_keep=1)
    meta: dict[str, Any] = {"epoch": 0, "position": 0, "best": None, "last": None}
    if latest.latest_step() is not None:
        if saved_config.is_file():
            diff = ckpt.config_differences(json.loads(saved_config.read_text()), ckpt.config_to_dict(config))
            diff = [d for d in diff if not d.startswith(("train.epochs", "train.max_steps", "train.progress",
                                                         "data.num_workers", "data.cache_decoded",
                                                         "train.log_every"))]
            if diff:
                raise TrainingError(f"{workdir} holds a run with another config ({'; '.join(diff)}): "
                                    "use a new --workdir, or the same config to resume")
        step0 = latest.latest_step()
        state, meta = ckpt.restore(latest, step0, jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state))
        print(f"resuming {workdir} from step {step0} (epoch {meta['epoch'] + 1}, batch {meta['position']})",
              flush=True)
    elif main_process:
        ckpt.save_config(workdir, config)
    if main_process:
        ckpt.save_data_info(workdir, data["info"])
    step = int(jax.device_get(state["step"]))
    logger = Logger(workdir, step, main_process)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    last_saved = step if latest.latest_step() is not None else None
    kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)

    def save_latest(epoch: int, position: int) -> None:
        nonlocal last_saved
        if position == steps_per_epoch:
            epoch, position = epoch + 1, 0
        meta.update(epoch=epoch, position=position)
        ckpt.save(latest, step, state, meta)         # finishes in the background
        last_saved = step
        if kill_at and step == kill_at:
            latest.wait_until_finished()
            os.kill(os.getpid(), signal.SIGKILL)

    pending: list[dict[str, jax.Array]] = []

    def check_pending(epoch: int) -> dict[str, float] | None:
        """Fetch the step metrics since the last check; stop on a non-finite loss."""
        if not pending:
            return None
        fetched = jax.device_get(pending)
        pending.clear()
        bad = [i for i, m in enumerate(fetched) if not bool(m["ok"])]
        if bad:
            first = step - len(fetched) + bad[0] + 1
            where = (f"the last good checkpoint is step {last_saved} in {workdir / ckpt.LATEST_DIR}"
                     if last_saved is not None else "no checkpoint had been saved yet")
            raise TrainingError(
                f"step {first} (epoch {epoch + 1}) gave a non-finite loss, gradient or parameters "
                f"(loss {float(fetched[bad[0]]['loss'])}); training stopped and that step was not applied; "
                f"{where}. Lower train.learning_rate or check the shards in {config.data.dir}.")
        n = len(fetched)
        out = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0] if k not in ("ok", "correct")}
        out["train_accuracy"] = float(sum(m["correct"] for m in fetched)) / (n * t.batch_size)
        return out

    start_epoch, position = meta["epoch"], meta["position"]
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, t.epochs):
            if step >= total_steps:
                break
            batches = ip.prefetch(iter(train_data.dataset(epoch, position)), 2, lambda b: to_global(b, mesh))
            bar = tqdm(total=steps_per_epoch, initial=position, desc=f"epoch {epoch + 1}/{t.epochs}",
                       disable=not (t.progress and main_process), leave=False)
            tick, tick_step = time.perf_counter(), step
            for batch in batches:
                state, step_metrics = train_step(state, batch)
                pending.append(step_metrics)
                step += 1
                position += 1
                bar.update()
                if step % t.log_every == 0 or position == steps_per_epoch or step == total_steps:
                    logged = check_pending(epoch)
                    now = time.perf_counter()
                    rate = (step - tick_step) * t.batch_size / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    logged.update(kind="train", epoch=epoch + 1, step=step, lr=float(schedule(step - 1)),
                                  samples_per_s=rate)
                    logger.write(logged)
                    bar.set_postfix(loss=f"{logged['loss']:.3f}")
                if t.checkpoint_every and step % t.checkpoint_every == 0 and position < steps_per_epoch:
                    check_pending(epoch)
                    save_latest(epoch, position)
                if step >= total_steps:
                    break
            bar.close()
            finished_epoch = position == steps_per_epoch
            if finished_epoch and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs):
                report, _, _ = evaluate(eval_step, state, eval_data, mesh, test_meta, class_names,
                                     t.progress and main_process)
                report["epoch"] = epoch + 1
                meta["last"] = report
                improved = meta["best"] is None or report["war"] > meta["best"]["war"]
                if improved:
                    meta["best"] = report
                logger.write({"kind": "eval", "epoch": epoch + 1, "step": step, "war": report["war"],
                              "uar": report["uar"]})
                print(f"epoch {epoch + 1}: WAR {100 * report['war']:.2f}  UAR {100 * report['uar']:.2f}"
                      f"{'  (best)' if improved else ''}", flush=True)
                if main_process:
                    write_results(workdir, config, class_names, meta)
                if improved:
                    ckpt.save(best_mngr, step, state, meta)
            check_pending(epoch)
            if last_saved != step:
                save_latest(epoch, position)
            if finished_epoch:
                position = 0
    finally:
        latest.wait_until_finished()
        best_mngr.wait_until_finished()
        latest.close()
        best_mngr.close()
        logger.close()
    elapsed = time.perf_counter() - started
    if main_process and meta["best"] is not None:
        write_results(workdir, config, class_names, meta, figure=True)
    results = results_dict(config, class_names, meta)
    results["train_seconds"] = elapsed
    return results


def results_dict(config: ml_collections.ConfigDict, class_names: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": config.dataset, "fold": config.fold or None, "variant": config.variant,
            "split": "+".join(config.data.test_splits), "class_names": class_names,
            "best": meta.get("best"), "last": meta.get("last")}


def write_results(workdir: Path, config: ml_collections.ConfigDict, class_names: list[str],
                  meta: dict[str, Any], figure: bool = False) -> None:
    """results.json after every evaluation; with ``figure``, at the end of the run, the best epoch's
    confusion matrix as confusion.png (0.7 s of matplotlib, so not every epoch)."""
    results = results_dict(config, class_names, meta)
    tmp = workdir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(workdir / "results.json")
    if figure and meta.get("best") is not None:
        from dferjax.plots import plot_confusion
        plot_confusion(meta["best"]["confusion"], class_names, workdir / "confusion.png",
                       title=f"{config.dataset} {' '.join(config.data.test_splits)}, "
                             f"epoch {meta['best']['epoch']}")


def cpu_device_count(setting: int, cores: int, batch_sizes: tuple[int, ...]) -> int:
    """How many JAX CPU devices train.cpu_devices asks for on a host with ``cores`` cores (0: JAX's default).

    -1: the most devices, at most ``cores``, that divide every batch size (XLA:CPU runs one device's
    convolutions on about one core, so a device per core is data parallelism within the host).
    """
    if setting >= 0:
        return setting
    return max(d for d in range(1, max(cores, 1) + 1) if all(b % d == 0 for b in batch_sizes))


def set_cpu_devices(config: ml_collections.ConfigDict) -> None:
    """Apply train.cpu_devices before JAX starts its backends (a note if they already run)."""
    from jax._src import xla_bridge

    t = config.train
    n = cpu_device_count(int(t.cpu_devices), os.cpu_count() or 1, (int(t.batch_size), int(t.eval_batch_size)))
    if n == 0:
        return
    if xla_bridge.backends_are_initialized():
        if jax.default_backend() == "cpu" and len(jax.devices()) != n:
            print(f"note: train.cpu_devices asks for {n} CPU devices, but JAX already runs with "
                  f"{len(jax.devices())}; using those", flush=True)
        return
    jax.config.update("jax_num_cpu_devices", n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dferjax.train", description=__doc__.split("\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--workdir", required=True, help="run directory: checkpoints, metrics, results")
    parser.add_argument("--coordinator", help="host:port of process 0 (several hosts)")
    parser.add_argument("--num-processes", type=int, help="number of processes (several hosts)")
    parser.add_argument("--process-id", type=int, help="this process's index (several hosts)")
    try:
        args, config = parse_args_with_config(parser, argv)
    except (KeyError, TypeError, ValueError, FileNotFoundError, AttributeError) as error:
        parser.error(str(error).strip('"'))
    set_cpu_devices(config)
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    print(f"{jax.process_count()} process(es), {len(jax.devices())} {jax.devices()[0].platform} device(s); "
          f"workdir {args.workdir}", flush=True)
    try:
        results = train_and_evaluate(config, args.workdir)
    except (TrainingError, ip.DataConfigError, ckpt.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    best, last = results["best"], results["last"]
    if best is None:
        print(f"trained {results['train_seconds']:.0f} s; no evaluation yet")
        return 0
    print(f"done in {results['train_seconds']:.0f} s. best epoch {best['epoch']}: WAR {100 * best['war']:.2f}%  "
          f"UAR {100 * best['uar']:.2f}%; last epoch {last['epoch']}: WAR {100 * last['war']:.2f}%  "
          f"UAR {100 * last['uar']:.2f}%  ({args.workdir}/results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
