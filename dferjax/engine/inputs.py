"""From a config to the data the configured model consumes: the one bridge of models and data.

The model declares what it takes (``models.input_spec``: frames per sample, image size, heat-maps
and their resolution); the config's ``data`` section says how clips are sampled and augmented. Here
the two meet in the data layer's :class:`~dferjax.data.input_pipeline.ExampleSpec`, which carries
only numbers, so the data layer never sees a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from dferjax import models
from dferjax.data import dataset, records
from dferjax.data.dataset import DataConfigError
from dferjax.data.input_pipeline import ExampleSpec


def example_spec(config: ml_collections.ConfigDict) -> ExampleSpec:
    """The data layer's spec for the configured model and data settings.

    Raises:
      UnknownModelError: model.name names no registered model.
      DataConfigError: data.num_segments x data.frames_per_segment differs from the model's frames.
    """
    spec = models.input_spec(config.model)
    data = config.data
    out = ExampleSpec(image_size=spec.image_size, num_segments=int(data.num_segments),
                      frames_per_segment=int(data.frames_per_segment), heatmap_size=spec.heatmap_size,
                      heatmap_sigma=spec.heatmap_sigma, crop_scale=tuple(data.crop_scale),
                      crop_ratio=tuple(data.crop_ratio), flip=bool(data.flip))
    if out.num_frames != spec.num_frames:
        raise DataConfigError(
            f"data.num_segments x data.frames_per_segment = {out.num_frames} frames, but "
            f"model.{config.model.name}.num_frames = {spec.num_frames}: make them agree")
    return out


def open_data(config: ml_collections.ConfigDict, data_dir: str | None = None,
              test_splits: tuple[str, ...] | None = None, with_train: bool = True) -> dict[str, Any]:
    """The shards a config points at, checked against it before anything runs.

    Args:
      config: a full config (``data.dir``, ``data.train_splits``, ``data.test_splits``, ``model``).
      data_dir: another shard directory than ``data.dir``; test_splits: other test splits.
      with_train: open the training splits too.
    Returns:
      {"info": dataset_info.json, "spec": ExampleSpec, "train": ShardedDataSource or None,
      "test": ShardedDataSource, "class_names": [...]}.
    Raises:
      DataConfigError: no shards, another class count than model.num_classes, a missing split or shard.
    """
    data_dir = data_dir or config.data.dir
    if not data_dir:
        raise DataConfigError("config key data.dir is empty: set it to a directory of shards from data_prep")
    info = dataset.read_info(data_dir)
    dataset.check_classes(info, int(config.model.num_classes), data_dir)
    spec = example_spec(config)
    train = None
    if with_train:
        train = records.ShardedDataSource(dataset.split_shards(data_dir, info, config.data.train_splits,
                                                               "data.train_splits"))
    key = "data.test_splits" if test_splits is None else "--splits"
    test = records.ShardedDataSource(dataset.split_shards(data_dir, info, test_splits or config.data.test_splits,
                                                          key))
    return {"info": info, "spec": spec, "train": train, "test": test, "class_names": list(info["classes"]),
            "dir": Path(data_dir)}


def record_metadata(source: records.ShardedDataSource) -> dict[str, list]:
    """clip_id, label and scene of every record of ``source``, in record order."""
    out: dict[str, list] = {"clip_id": [], "label": [], "scene": []}
    for i in range(len(source)):
        header = records.decode_example(source[i])
        for key in out:
            out[key].append(header[key])
    return out
