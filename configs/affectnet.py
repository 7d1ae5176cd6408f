"""AffectNet (Mollahosseini et al. 2017), manually annotated images: 7 or 8 classes. ``configs/affectnet.py:classes=8``.

classes: 7 (AffectNet-7: contempt left out) or 8 (AffectNet-8, with contempt). The shards must be
built with the same count (``--num-classes``). Training uses the train_set (training.csv), evaluation the
val_set (validation.csv): AffectNet's test set is not public, so, as every paper, the validation set is
the test set. It is balanced (500 images per class), so WAR (accuracy) and UAR (mean class accuracy)
coincide on it up to rounding; the report shows both.

model: ``dfer`` (default; the paper's per-frame network on one image, Table 9's spatial path, model B)
or ``mfer`` (Xu et al. 2024, with its authors' recipe: ``configs/affectnet.py:model=mfer,classes=8``), as
in configs/rafdb.py, with the same arguments (image_size, batch, epochs, lr; batch, epochs and lr default
to the model's recipe, except epochs for dfer: 20). The training set is heavily imbalanced (happy ~134k,
contempt ~4k): our reading keeps each model's plain loss (dfer: the cross-entropy of Eq. 13); class-balanced
sampling, as some papers use, is not built.
Shards: ``python -m data_prep.build --dataset affectnet --root /path/to/AffectNet --num-classes 8 --out data/affectnet8 --image-size 224``.
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg

DEFAULTS = {"model": "dfer", "classes": 7, "image_size": 224, "batch": 64, "epochs": 20, "lr": 1e-3}


def get_config(arg=None):
    model = parse_config_arg(arg, DEFAULTS, "configs/affectnet.py")["model"]
    defaults = models.recipe_defaults(model, DEFAULTS)                 # batch, epochs, lr: the model's recipe
    args = parse_config_arg(arg, defaults, "configs/affectnet.py")
    if args["classes"] not in (7, 8):
        raise ValueError(f"configs/affectnet.py: classes must be 7 or 8 (AffectNet-7, AffectNet-8), got {args['classes']}")
    config = base_config(models.default_config())
    config.dataset = "affectnet"
    models.select_still_image(config, model)      # one frame, model B for dfer, the model's recipe
    config.model.num_classes = args["classes"]
    config.model[model].image_size = args["image_size"]
    config.data.dir = f"data/affectnet{args['classes']}"
    config.data.crop_scale = (0.8, 1.0)
    config.data.random_erasing = 0.5              # RandomErasing(scale=(0.02, 0.25)), as DAN's RAF-DB recipe
    config.data.erasing_scale = (0.02, 0.25)
    config.train.batch_size = args["batch"]
    config.train.eval_batch_size = args["batch"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["epochs"] // 2, args["epochs"] * 3 // 4)   # the step schedule's (dfer)
    return config
