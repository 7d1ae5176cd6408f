"""The evaluation loop: a model state over every record of a split, and a checkpoint on a split.

Metrics as the field reports them (dferjax.metrics): WAR = accuracy, UAR = mean class recall, per
class, the confusion matrix, and per scene where the records have scenes (FERV39k, Table 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from dferjax import metrics
from dferjax.data import input_pipeline as ip
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.inputs import open_data, record_metadata
from dferjax.engine.mesh import make_mesh, replicate, to_global
from dferjax.engine.steps import jit_eval_step


def evaluate_split(eval_step: Any, state: Any, data: ip.EvalData, mesh: Mesh, meta: dict[str, list],
                   class_names: list[str], progress: bool) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Run ``eval_step`` over every record of ``data`` once.

    Args:
      eval_step: a jitted eval step (engine.steps.jit_eval_step) for ``mesh``.
      state: the replicated state ({"params", "rest", ...}).
      data: the split's EvalData (every record once, padded to whole global batches).
      meta: record_metadata of the split (labels, scenes) in record order.
    Returns:
      metrics.report over the split, the embeddings (N, d) and the logits (N, K), in record order.
    """
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


def checkpoint_outputs(checkpoint: str | Path, which: str = "best", splits: Sequence[str] | None = None,
                       data_dir: str | None = None, batch_size: int | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """A run's checkpoint, or a model file, evaluated over ``splits`` with the training input pipeline.

    Args:
      checkpoint: a run directory, ``RUN/best/<step>`` or a model file (``python -m dferjax.export``);
        which: "best" or "latest" (for a run).
      splits: shard splits (default: the run's test splits); data_dir: shards (default: the run's;
        required for a model file, which names no shards).
      batch_size: global eval batch (default: train.eval_batch_size, rounded to the device count).
    Returns:
      {"report", "embeddings" (N, d), "logits" (N, K), "labels" (N,), "clip_ids", "class_names",
      "source", "spec", "config", "meta", "splits", "used" (the checkpoint, ``RUN/best/<step>``, or the model
      file), "step"}, arrays in record order.
    Raises:
      CheckpointError, DataConfigError: a run, checkpoint, model file or shards that cannot be used (named);
        a model file without ``data_dir``.
    """
    if ckpt.is_model_file(checkpoint) and not data_dir:
        raise ckpt.CheckpointError(f"{checkpoint} is a model file: name the shards to evaluate it on (--data DIR)")
    trained = ckpt.load_trained(checkpoint, which, with_data=False)
    model, config, meta = trained.model, trained.config, trained.meta
    splits = tuple(splits or config.data.test_splits)
    data = open_data(config, data_dir, splits, with_train=False)
    source, spec = data["test"], data["spec"]
    mesh = make_mesh()
    devices = len(jax.devices())
    batch = batch_size or config.train.eval_batch_size
    batch = max(devices, batch - batch % devices)
    eval_data = ip.EvalData(source, spec, batch, process_index=jax.process_index(),
                            process_count=jax.process_count())
    graphdef, params, rest = ckpt.split_model(model)
    state = replicate({"params": params, "rest": rest}, mesh)
    step = jit_eval_step(graphdef, mesh)
    test_meta = record_metadata(source)
    report, embeddings, logits = evaluate_split(step, state, eval_data, mesh, test_meta, data["class_names"],
                                                progress)
    return {"report": report, "embeddings": embeddings, "logits": logits, "labels": np.asarray(test_meta["label"]),
            "clip_ids": test_meta["clip_id"], "class_names": data["class_names"], "source": source,
            "spec": spec, "config": config, "meta": meta, "splits": list(splits), "used": trained.source,
            "step": trained.step}
