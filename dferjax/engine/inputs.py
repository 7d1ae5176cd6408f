"""From a config to the data the configured model consumes: the one bridge of models and data.

The model declares what it takes (``models.input_spec``: frames per sample, image size, heat-maps
and their resolution); the config's ``data`` section says how clips are sampled and augmented. Here
the two meet in the data layer's :class:`~dferjax.data.input_pipeline.ExampleSpec`, which carries
only numbers, so the data layer never sees a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from dferjax import models
from dferjax.data import dataset, records
from dferjax.data.dataset import DataConfigError
from dferjax.data.input_pipeline import ExampleSpec


def example_spec(config: ml_collections.ConfigDict) -> ExampleSpec:
    """The data layer's spec for the configured model and data settings (the ``data`` section's
    sampling and augmentation keys, the model's frames, image size, heat-maps, keyframe selection and
    classes).

    A run made before the static-FER augmentations (``data.crop_padding`` ... ``data.erasing_value``)
    lacks their keys: they are off, ExampleSpec's defaults.

    Raises:
      UnknownModelError: model.name names no registered model.
      DataConfigError: data.num_segments x data.frames_per_segment differs from the model's frames.
    """
    spec = models.input_spec(config.model)
    data = config.data

    def added(key: str) -> Any:
        return data.get(key, getattr(ExampleSpec, key))

    out = ExampleSpec(image_size=spec.image_size, num_segments=int(data.num_segments),
                      frames_per_segment=int(data.frames_per_segment), heatmap_size=spec.heatmap_size,
                      heatmap_sigma=spec.heatmap_sigma, crop_scale=tuple(data.crop_scale),
                      crop_ratio=tuple(data.crop_ratio), flip=bool(data.flip),
                      num_classes=int(config.model.num_classes), crop_padding=int(added("crop_padding")),
                      padding_mode=str(added("padding_mode")),
                      color_jitter=tuple(float(v) for v in added("color_jitter")),
                      random_erasing=float(added("random_erasing")),
                      erasing_scale=tuple(float(v) for v in added("erasing_scale")),
                      erasing_ratio=tuple(float(v) for v in added("erasing_ratio")),
                      erasing_value=str(added("erasing_value")), keyframes=spec.keyframes,
                      keyframe_threshold=float(spec.keyframe_threshold))
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
      DataConfigError: no shards, another class count than model.num_classes, a clip model on still
        images or a still-image model on clips (``dataset.check_media``), a missing split or shard.
    """
    data_dir = data_dir or config.data.dir
    if not data_dir:
        raise DataConfigError("config key data.dir is empty: set it to a directory of shards from data_prep")
    info = dataset.read_info(data_dir)
    dataset.check_classes(info, int(config.model.num_classes), data_dir)
    spec = example_spec(config)
    dataset.check_media(info, spec.num_frames, data_dir, f"model.{config.model.name}.num_frames")
    train = None
    if with_train:
        train = records.ShardedDataSource(dataset.split_shards(data_dir, info, config.data.train_splits,
                                                               "data.train_splits"))
    key = "data.test_splits" if test_splits is None else "--splits"
    test = records.ShardedDataSource(dataset.split_shards(data_dir, info, test_splits or config.data.test_splits,
                                                          key))
    return {"info": info, "spec": spec, "train": train, "test": test, "class_names": list(info["classes"]),
            "dir": Path(data_dir)}


def record_metadata(source: records.ShardedDataSource, num_classes: int = 0) -> dict[str, list]:
    """clip_id, label and scene of every record of ``source``, in record order.

    Args:
      source: the records.
      num_classes: labels must lie in [0, num_classes) (0: unchecked).
    Raises:
      DataConfigError: a label outside that range (naming the shard, record and clip).
    """
    out: dict[str, list] = {"clip_id": [], "label": [], "scene": []}
    for i in range(len(source)):
        header = records.decode_example(source[i])
        if num_classes and not 0 <= int(header["label"]) < num_classes:
            shard, record = source.locate(i)
            raise DataConfigError(f"shard {shard}, record {record} (clip {header['clip_id']}): label "
                                  f"{header['label']} is not one of the {num_classes} classes (0-{num_classes - 1}) "
                                  "of model.num_classes: rebuild the shards with data_prep, or set model.num_classes")
        for key in out:
            out[key].append(header[key])
    return out


def clip_of_record(data_dir: str | Path, shard: str | Path, record: int) -> str | None:
    """The clip a shard's record holds, from the data set's manifest (``clip_id`` and its source);
    None when the manifest does not say (it is missing, or lists no such record)."""
    path = Path(data_dir) / dataset.MANIFEST_FILE
    name = Path(shard).name
    try:
        with path.open() as f:
            for line in f:
                entry = json.loads(line)
                if entry.get("shard") == name and entry.get("record") == record:
                    return f"{entry.get('clip_id')}, from {entry.get('source')}"
    except (OSError, ValueError):
        return None
    return None
