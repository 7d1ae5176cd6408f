"""AffectNet (Mollahosseini et al. 2017), manually annotated images: 7 or 8 classes. ``configs/affectnet.py:classes=8``.

classes: 7 (AffectNet-7: contempt left out) or 8 (AffectNet-8, with contempt). The shards must be
built with the same count (``--num-classes``). Training uses the train_set (training.csv), evaluation the
val_set (validation.csv): AffectNet's test set is not public, so, as every paper, the validation set is
the test set. It is balanced (500 images per class), so WAR (accuracy) and UAR (mean class accuracy)
coincide on it up to rounding; the report shows both.

The model is the paper's per-frame network on one image (Table 9's spatial path, model B), as in
configs/rafdb.py, with the same arguments (image_size, batch, epochs, lr). The training set is heavily
imbalanced (happy ~134k, contempt ~4k): our reading keeps the plain cross-entropy of the paper (Eq.
13); class-balanced sampling, as some papers use, is not built.
Shards: ``python -m data_prep.build --dataset affectnet --root /path/to/AffectNet --num-classes 8 --out data/affectnet8 --image-size 224``.
"""

from dferjax import models
from dferjax.config import base_config, one_frame, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"classes": 7, "image_size": 224, "batch": 64, "epochs": 20, "lr": 1e-3},
                            "configs/affectnet.py")
    if args["classes"] not in (7, 8):
        raise ValueError(f"configs/affectnet.py: classes must be 7 or 8 (AffectNet-7, AffectNet-8), got {args['classes']}")
    config = base_config(models.default_config())
    config.dataset = "affectnet"
    one_frame(config)
    models.apply_variant(config.model.dfer, "B")
    config.variant = "B"
    config.model.num_classes = args["classes"]
    config.model.dfer.image_size = args["image_size"]
    config.data.dir = f"data/affectnet{args['classes']}"
    config.data.crop_scale = (0.8, 1.0)
    config.data.random_erasing = 0.5              # RandomErasing(scale=(0.02, 0.25)), as DAN's RAF-DB recipe
    config.data.erasing_scale = (0.02, 0.25)
    config.train.batch_size = args["batch"]
    config.train.eval_batch_size = args["batch"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["epochs"] // 2, args["epochs"] * 3 // 4)
    return config
