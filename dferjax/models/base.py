"""The model contract: what every registered model takes, returns and declares.

A model is an ``nnx.Module`` class registered in ``dferjax.models.MODELS`` under the name that
``config.model.name`` selects. The engine (training, evaluation, predict, the benchmarks) relies on
nothing else than :class:`Model`:

* **Construction**: ``Model.from_config(section, *, num_classes, dtype, rngs)`` where ``section`` is
  the model's own config section ``config.model.<name>`` (only its own settings) and
  ``Model.default_config()`` gives that section's defaults.
* **What it consumes**: ``Model.input_spec(section, num_classes)`` -> :class:`InputSpec`: frames per
  sample, image size, whether it needs key-point heat-maps and at what resolution, and whether the
  frames are sampled among keyframes (TDRAG's). This declaration
  is the only place a heat-map size is derived; a model that needs none gets none (nothing is
  rendered for it).
* **The call**: ``model(inputs, *, train) -> Outputs`` with ``inputs`` a mapping of named arrays:
  ``"frames"`` (B, N, S, S, 3) RGB in [0, 255] (uint8), and ``"heatmaps"`` (B, N, h, h, 18) where
  the spec asks for them.
* **Its loss**: ``model.loss(outputs, labels) -> (scalar loss, {name: scalar})``.
* **Its recipe** (optional): ``Model.RECIPE``, {"section.key": value} of the training settings its
  authors used where they differ from the base config's (e.g. ``{"train.optimizer": "adamw"}``),
  applied by ``models.select(config, name)`` (a config file's ``model=`` argument).
* **Keys added later** (optional): ``Model.ADDED_KEYS``, {key: value} of section keys added after runs
  were made, each at the value that keeps what such a run computed; a run's config that lacks one gets
  it from here when loaded (``checkpoints.with_new_keys``), so old runs resume and load unchanged.
* **A tiny setting**: ``Model.TINY``, overrides of its section that shrink it for CPU tests and the
  demo (the one "tiny" setting, as big_vision's ``runlocal``).
* **Allowed values** (optional): ``Model.CHOICES``, {key: allowed values} of its section, and
  ``Model.POSITIVE``, its keys that must be positive integers (``widths``, where present, must be 4
  positive integers), checked whenever a config is used (``models.check_config``), so a typo fails in
  one line naming the key instead of deep inside the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
"""config.model.dtype -> the compute dtype (parameters stay float32)."""


class Outputs(NamedTuple):
    """What a model returns.

    logits: (B, K) float32, the classifier's (v_class of Eq. 12 for ``dfer``).
    aux_logits: (B, K) float32 of an auxiliary head (Eq. 5 for ``dfer``) or None.
    embedding: (B, d) float32, the sample's feature vector (t-SNE figures, retrieval).
    """

    logits: jax.Array
    aux_logits: jax.Array | None
    embedding: jax.Array


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model consumes, per sample.

    num_frames: frames per sample (1 for a still-image model).
    image_size: side of the square RGB face crops, in pixels.
    heatmap_size: side of the 18 key-point heat-maps (the model's feature-map grid), or None when the
      model takes no heat-maps.
    heatmap_sigma: the heat-maps' Gaussian standard deviation, in heat-map cells.
    num_classes: K, the classifier's width.
    keyframes: the redundancy measure by which the input pipeline keeps a clip's keyframes before
      sampling its frames (``data.keyframes.MEASURES``, e.g. "ssim"); "" (default): all frames.
    keyframe_threshold: a frame more redundant than this with the last kept one is dropped.
    """

    num_frames: int
    image_size: int
    heatmap_size: int | None
    heatmap_sigma: float
    num_classes: int
    keyframes: str = ""
    keyframe_threshold: float = 0.99

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("frames", "heatmaps") if self.heatmap_size is not None else ("frames",)


@runtime_checkable
class Model(Protocol):
    """The contract of a registered model (see the module docstring)."""

    TINY: ClassVar[dict[str, Any]]

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict: ...

    @classmethod
    def from_config(cls, section: Any, *, num_classes: int, dtype: str, rngs: nnx.Rngs) -> Model: ...

    @classmethod
    def input_spec(cls, section: Any, num_classes: int) -> InputSpec: ...

    def __call__(self, inputs: Mapping[str, jax.Array], *, train: bool = False) -> Outputs: ...

    def loss(self, outputs: Outputs, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]: ...


def compute_dtype(name: str) -> Any:
    """The jnp dtype of ``config.model.dtype``; ValueError naming the key otherwise."""
    if name not in DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]
