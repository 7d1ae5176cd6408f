"""The optimiser, the train state and the jitted train and eval steps, for any registered model.

Section 4.2 of Huang et al. (2024) for the defaults: Adam (b1 0.9, b2 0.99), learning rate 1e-3
times 0.1 at epochs 40 and 60; the loss is the model's own (``model.loss``: Eq. 13 for ``dfer``).
Hot paths run through ``jax.jit`` over pure ``nnx`` states (``nnx.merge`` inside the step), not a
Python-heavy ``nnx.jit`` per step. XLA inserts the gradient all-reduce of the data-parallel step, and
batch norm sees the whole global batch, so the step is the same computation on any device count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dferjax import models
from dferjax.engine import checkpoints as ckpt


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate per step, by ``train.lr_schedule``.

    "step" (the paper's, section 4.2): lr x ``lr_decay_factor`` at each epoch in ``lr_decay_epochs`` (x0.1 at
    40 and 60). "exponential" (PyTorch's ``ExponentialLR`` stepped once per epoch, as the DFEW baseline's and
    MFER's recipes): lr x ``lr_decay_factor`` ** (completed epochs).

    Args:
      config: a full config (train.learning_rate, lr_schedule, lr_decay_epochs, lr_decay_factor).
      steps_per_epoch: optimiser steps per epoch.
    Returns:
      step -> learning rate.
    Raises:
      ValueError: an unknown ``train.lr_schedule``.
    """
    t = config.train
    kind = t.get("lr_schedule", "step")
    if kind == "exponential":
        return optax.exponential_decay(t.learning_rate, transition_steps=max(1, steps_per_epoch),
                                       decay_rate=t.lr_decay_factor, staircase=True)
    if kind != "step":
        raise ValueError(f"config key train.lr_schedule = {kind!r} is not one of 'step', 'exponential'")
    return optax.piecewise_constant_schedule(
        t.learning_rate, {int(e) * steps_per_epoch: t.lr_decay_factor for e in t.lr_decay_epochs})


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam or AdamW (``train.optimizer``; b1, b2 of train.*), as PyTorch's.

    "adam": an optional L2 weight decay added to the gradient first (PyTorch's ``Adam(weight_decay=)``).
    "adamw": decoupled weight decay (Loshchilov & Hutter 2019; PyTorch's ``AdamW``): the update is the Adam
    step plus ``weight_decay`` x the parameter, scaled by the learning rate.

    Args:
      config: a full config (train.optimizer, b1, b2, weight_decay and the schedule's keys).
      steps_per_epoch: optimiser steps per epoch (for the schedule).
    Returns:
      The optax transformation.
    Raises:
      ValueError: an unknown ``train.optimizer``.
    """
    t = config.train
    kind = t.get("optimizer", "adam")
    schedule = optax.scale_by_learning_rate(learning_rate_schedule(config, steps_per_epoch))
    adam = optax.scale_by_adam(b1=t.b1, b2=t.b2, eps=1e-8)
    if kind == "adamw":
        return optax.chain(adam, optax.add_decayed_weights(t.weight_decay), schedule)
    if kind != "adam":
        raise ValueError(f"config key train.optimizer = {kind!r} is not one of 'adam', 'adamw'")
    parts = [optax.add_decayed_weights(t.weight_decay)] if t.weight_decay else []
    return optax.chain(*parts, adam, schedule)


def initial_model(config: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """The configured model's graphdef, params and rest to start training from.

    Initialised from ``train.seed``; then the backbone weights of ``model.<name>.backbone_weights``
    if set, or the parameters of the checkpoint ``train.init_checkpoint`` (fine-tuning, e.g. AFEW
    from DFEW) if set.

    Raises:
      UnknownModelError: model.name names no registered model.
      CheckpointError: init_checkpoint is not a checkpoint of this model.
    """
    model = models.build_model(config.model, seed=config.train.seed)
    weights = models.model_section(config.model).get("backbone_weights", "")
    if weights:
        from dferjax.models.pretrained import init_backbone_from
        init_backbone_from(model, weights)
    graphdef, params, rest = ckpt.split_model(model)
    if config.train.init_checkpoint:
        run_dir, directory, step = ckpt.find_checkpoint(config.train.init_checkpoint, "best")
        ckpt.check_same_model(directory, step, ckpt.load_run_config(run_dir), config, str(run_dir))
        params, rest, _ = ckpt.load_model_state(directory, step, config)
        print(f"initialised from {directory / str(step)}")
    return graphdef, params, rest


def initial_state(params: nnx.State, rest: nnx.State, tx: optax.GradientTransformation) -> dict[str, Any]:
    """The train state pytree ``{"step", "params", "rest", "opt_state"}`` (see engine.checkpoints)."""
    return {"step": np.int32(0), "params": params, "rest": rest, "opt_state": tx.init(params)}


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """state, batch -> new state, step metrics.

    ``batch`` is the mapping of named inputs the model takes (``frames``, ``heatmaps`` where the
    model declares them) plus ``label`` (B,) int32. The loss is the model's (``model.loss``). A step
    whose loss, gradient or updated parameters are not finite leaves the state as it was and reports
    ``ok`` False (checked on the host every runtime.log_every steps, not inside the step).
    """

    def step(state: dict[str, Any], batch: dict[str, jax.Array]) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        def loss_fn(params):
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            outputs = model(batch, train=True)
            loss, parts = model.loss(outputs, batch["label"])
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
    """state, batch -> logits (B, K), the sample embedding (B, d), labels and ``valid``, in eval mode."""

    def step(state: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
        outputs = model(batch, train=False)
        return {"logits": outputs.logits, "embedding": outputs.embedding, "label": batch["label"],
                "valid": batch["valid"]}

    return step


def jit_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh):
    """``make_train_step`` jitted for ``mesh``: replicated state (donated), batch sharded on ``data``."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(make_train_step(graphdef, tx), in_shardings=(replicated, sharded),
                   out_shardings=(replicated, replicated), donate_argnums=0)


def jit_eval_step(graphdef: nnx.GraphDef, mesh: Mesh):
    """``make_eval_step`` jitted for ``mesh``: replicated state, batch sharded on ``data``."""
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(make_eval_step(graphdef), in_shardings=(replicated, sharded), out_shardings=replicated)
