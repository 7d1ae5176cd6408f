"""DFEW (Jiang et al. 2020): 7 classes, five folds. ``configs/dfew.py:fold=1,variant=E``.

fold: 1-5, the test set of the five-fold protocol (EmoLabel_DataSplit set_<fold>); training uses the
other four folds' shards. variant: A-E, the model of Table 9 (E, the full model, by default).
model: a registered model, selected with its training recipe (``models.select``): ``dfer`` (the
paper's, default), ``r3d18`` (3D-ResNet18, the DFEW baseline) or ``tdrag`` (Liu et al. 2024), e.g.
``configs/dfew.py:fold=1,model=tdrag``.
Shards: ``python -m data_prep.build --dataset dfew --root /path/to/DFEW --out data/dfew``.
"""

from dferjax import models
from dferjax.config import base_config, fold_splits, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"fold": 1, "variant": "E", "model": "dfer"}, "configs/dfew.py")
    if not 1 <= args["fold"] <= 5:
        raise ValueError(f"configs/dfew.py: fold must be 1-5 (DFEW's five folds), got {args['fold']}")
    config = base_config(models.default_config())
    config.dataset = "dfew"
    config.fold = args["fold"]
    config.variant = args["variant"]
    config.data.dir = "data/dfew"
    config.data.train_splits, config.data.test_splits = fold_splits(args["fold"])
    models.apply_variant(config.model.dfer, args["variant"])
    models.select(config, args["model"])
    return config
