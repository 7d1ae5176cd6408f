"""AFEW (Dhall et al. 2012): 7 classes, trained on Train, evaluated on Val. ``configs/afew.py``.

As the paper does (section 4.1), the model is fine-tuned from a DFEW model: ``init`` names a DFEW run
directory or checkpoint, e.g. ``configs/afew.py:init=runs/dfew-1`` (its best checkpoint is used).
Shards: ``python -m data_prep.build --dataset afew --root /path/to/AFEW --out data/afew``.
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"variant": "E", "init": "runs/dfew-1"}, "configs/afew.py")
    config = base_config(models.default_config())
    config.dataset = "afew"
    config.variant = args["variant"]
    config.data.dir = "data/afew"
    config.train.init_checkpoint = args["init"]
    models.apply_variant(config.model.dfer, args["variant"])
    return config
