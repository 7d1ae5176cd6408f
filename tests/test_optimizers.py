"""The optimisers and learning-rate schedules the recipes name, against optax's and PyTorch's definitions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dferjax import models
from dferjax.config import base_config, check_values
from dferjax.engine.steps import learning_rate_schedule, make_optimizer


def config(**train):
    c = base_config(models.default_config())
    c.train.update(train)
    return c


def test_exponential_schedule_decays_once_per_epoch_as_pytorch_exponential_lr():
    schedule = learning_rate_schedule(config(lr_schedule="exponential", lr_decay_factor=0.9, learning_rate=1e-3), 5)
    for step in (0, 4, 5, 9, 10, 23):
        assert float(schedule(step)) == pytest.approx(1e-3 * 0.9 ** (step // 5), rel=1e-6)


def test_step_schedule_is_the_papers():
    schedule = learning_rate_schedule(config(learning_rate=1e-3, lr_decay_epochs=(2, 3)), 10)
    assert [float(schedule(s)) for s in (0, 19, 20, 29, 30)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])


def test_adamw_decays_the_weights_decoupled_as_optax_adamw():
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([0.1, 0.2, -0.3])}
    ours = make_optimizer(config(optimizer="adamw", weight_decay=0.05, learning_rate=1e-2, lr_decay_epochs=()), 1)
    ref = optax.adamw(1e-2, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.05)
    a, b = ours.init(params), ref.init(params)
    for _ in range(3):
        ua, a = ours.update(grads, a, params)
        ub, b = ref.update(grads, b, params)
        np.testing.assert_allclose(ua["w"], ub["w"], rtol=1e-6)


def test_unknown_optimizer_or_schedule_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="train.optimizer = 'sgd'"):
        check_values(config(optimizer="sgd"))
    with pytest.raises(ValueError, match="train.lr_schedule = 'cosine'"):
        check_values(config(lr_schedule="cosine"))


def test_select_applies_a_models_recipe(monkeypatch):
    class Recipe(models.FrameMeanModel):
        RECIPE = {"train.optimizer": "adamw", "train.lr_schedule": "exponential", "data.flip": False}
    monkeypatch.setitem(models.MODELS, "recipe_test", Recipe)
    c = base_config(models.default_config())
    models.select(c, "recipe_test")
    assert c.model.name == "recipe_test" and c.train.optimizer == "adamw" and c.train.lr_schedule == "exponential"
    assert c.data.flip is False
    with pytest.raises(models.UnknownModelError, match="nowhere"):
        models.select(c, "nowhere")
