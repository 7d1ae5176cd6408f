"""MAFW (Liu et al. 2022): 11 classes, five folds. ``configs/mafw.py:fold=1,variant=E``.

fold: 1-5, the test set of the five-fold protocol; training uses the other four folds' shards.
model: a registered model, selected with its training recipe (``models.select``): ``dfer`` (the
paper's, default), ``r3d18`` (3D-ResNet18, the DFEW baseline) or ``tdrag`` (Liu et al. 2024), e.g.
``configs/mafw.py:fold=1,model=tdrag``.
Shards: ``python -m data_prep.build --dataset mafw --root /path/to/MAFW --num-classes 11 --out data/mafw``.
"""

from dferjax import models
from dferjax.config import base_config, fold_splits, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"fold": 1, "variant": "E", "model": "dfer"}, "configs/mafw.py")
    if not 1 <= args["fold"] <= 5:
        raise ValueError(f"configs/mafw.py: fold must be 1-5 (MAFW's five folds), got {args['fold']}")
    config = base_config(models.default_config())
    config.dataset = "mafw"
    config.fold = args["fold"]
    config.variant = args["variant"]
    config.model.num_classes = 11
    config.data.dir = "data/mafw"
    config.data.train_splits, config.data.test_splits = fold_splits(args["fold"])
    models.apply_variant(config.model.dfer, args["variant"])
    models.select(config, args["model"])
    return config
