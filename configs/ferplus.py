"""FERPlus (Barsoum et al. 2016): FER2013's images with ten crowd votes each, majority-vote labels. ``configs/ferplus.py``.

classes: 8 (default, with contempt, as most FERPlus papers report) or 7 (images whose majority is
contempt are left out at data_prep). test: ``public`` (FER2013's PublicTest, the split most
papers report on) or ``private`` (PrivateTest, split ``test_private``). Training uses FER2013's
Training rows.

model: ``dfer`` (default; the paper's per-frame network on one image, model B, as in configs/rafdb.py) or
``mfer`` (Xu et al. 2024, with its authors' recipe: ``configs/ferplus.py:model=mfer``); batch, epochs and
lr default to the model's recipe (dfer: 64, 40, 1e-3; mfer: 32, 100, 1e-3). FER2013's faces are 48x48
grey crops; our reading upsamples them to ``image_size``, by default the model's own: 112 for dfer (a
ResNet18 at stride 16 then sees a 7x7 grid; 224, the ImageNet size, at 4x the cost), 224 for mfer (the
authors' input size; build the shards with ``--image-size 224`` for it), and augments as the FER2013 recipes
do: random crop with padding (4 pixels of 48, scaled to the crops) and the horizontal flip.
Shards: ``python -m data_prep.build --dataset ferplus --root /path/to/FER2013 --num-classes 8 --out data/ferplus8 --image-size 112``
(ROOT holds fer2013.csv and fer2013new.csv).
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg

DEFAULTS = {"model": "dfer", "classes": 8, "test": "public", "image_size": 112, "batch": 64, "epochs": 40, "lr": 1e-3}


def get_config(arg=None):
    model = parse_config_arg(arg, DEFAULTS, "configs/ferplus.py")["model"]
    defaults = {**models.recipe_defaults(model, DEFAULTS),             # batch, epochs, lr: the model's recipe
                "image_size": int(models.default_config()[model].image_size)}     # the model's own
    args = parse_config_arg(arg, defaults, "configs/ferplus.py")
    if args["classes"] not in (7, 8):
        raise ValueError(f"configs/ferplus.py: classes must be 7 or 8, got {args['classes']}")
    if args["test"] not in ("public", "private"):
        raise ValueError(f"configs/ferplus.py: test must be public or private, got {args['test']!r}")
    config = base_config(models.default_config())
    config.dataset = "ferplus"
    models.select_still_image(config, model)      # one frame, model B for dfer, the model's recipe
    config.model.num_classes = args["classes"]
    config.model[model].image_size = args["image_size"]
    config.data.dir = f"data/ferplus{args['classes']}"
    config.data.test_splits = ("test",) if args["test"] == "public" else ("test_private",)
    config.data.crop_scale = (1.0, 1.0)               # FER2013 recipes: RandomCrop(48, padding=4) and a flip
    config.data.crop_padding = round(4 * args["image_size"] / 48)   # 4 of 48 pixels, in stored pixels
    config.train.batch_size = args["batch"]
    config.train.eval_batch_size = args["batch"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["epochs"] // 2, args["epochs"] * 3 // 4)   # the step schedule's (dfer)
    return config
