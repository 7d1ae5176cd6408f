"""AFEW (Dhall et al. 2012): 7 classes, trained on Train, evaluated on Val. ``configs/afew.py``.

As the paper does (section 4.3.2: "the fine-tuning of the model trained from DFEW"), the model is
fine-tuned from a DFEW model: ``init`` names a DFEW run directory or checkpoint, e.g.
``configs/afew.py:init=runs/dfew-1`` (its best checkpoint is used). Section 4.1 says AFEW's Train (773
clips) and Val (383) sets are used, the test set not being public.

The paper gives no fine-tuning schedule. Our reading, the defaults here: a short schedule at a tenth of
section 4.2's rate, ``epochs=20`` at ``lr=1e-4`` (Adam, batch 64, as section 4.2) times 0.1 at epoch
``decay=15`` (0: no step); 773 clips make 12 steps an epoch, 240 in all. Any of them is an argument,
e.g. ``configs/afew.py:init=runs/dfew-1,epochs=30,lr=3e-4,decay=20``; section 4.2's full DFEW schedule
is ``epochs=80,lr=1e-3`` with ``--config.train.lr_decay_epochs=(40,60)``.
Shards: ``python -m data_prep.build --dataset afew --root /path/to/AFEW --out data/afew``.
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg

FINE_TUNE = {"epochs": 20, "lr": 1e-4, "decay": 15}
"""Our reading of the AFEW fine-tuning schedule (the paper gives none): epochs, learning rate, the epoch of
the x0.1 step (``train.lr_decay_factor``)."""


def get_config(arg=None):
    args = parse_config_arg(arg, {"variant": "E", "init": "runs/dfew-1", **FINE_TUNE}, "configs/afew.py")
    if args["epochs"] < 1 or not args["lr"] > 0 or not 0 <= args["decay"]:
        raise ValueError(f"configs/afew.py: epochs must be >= 1, lr > 0 and decay >= 0 (0: no step), got "
                         f"epochs={args['epochs']}, lr={args['lr']}, decay={args['decay']}")
    config = base_config(models.default_config())
    config.dataset = "afew"
    config.variant = args["variant"]
    config.data.dir = "data/afew"
    config.train.init_checkpoint = args["init"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["decay"],) if args["decay"] else ()
    models.apply_variant(config.model.dfer, args["variant"])
    return config
