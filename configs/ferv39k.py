"""FERV39k (Wang et al. 2022): 7 classes, fixed train/test split, 22 scenes. ``configs/ferv39k.py``.

Results are reported overall and per scene (the paper's Table 6); the scene of each clip is stored
in the shards.
model: a registered model, selected with its training recipe (``models.select``): ``dfer`` (the
paper's, default), ``r3d18`` (3D-ResNet18, the DFEW baseline) or ``tdrag`` (Liu et al. 2024), e.g.
``configs/ferv39k.py:model=tdrag``.
Shards: ``python -m data_prep.build --dataset ferv39k --root /path/to/FERV39k --out data/ferv39k``.
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"variant": "E", "model": "dfer"}, "configs/ferv39k.py")
    config = base_config(models.default_config())
    config.dataset = "ferv39k"
    config.variant = args["variant"]
    config.data.dir = "data/ferv39k"
    models.apply_variant(config.model.dfer, args["variant"])
    models.select(config, args["model"])
    return config
