"""RAF-DB basic (Li, Deng, Du 2017): 7 classes, still images, train / test. ``configs/rafdb.py``.

model: ``dfer`` (default) or ``mfer`` (any registered model), selected with its training recipe
(``models.select``):

- ``dfer``: the paper's per-frame network on one image (Huang et al. 2024, Table 9's spatial path, model
  B: ResNet18 + triplet attention, landmark pooling, key-point GCN, region fusion, the Eq. 5 head as the
  classifier). Adam (the paper's b1 0.9, b2 0.99) at ``lr``, x0.1 at half and three quarters of
  ``epochs``. Our reading: the paper trains clips for 80 epochs; still-image sets are 2-4x larger per
  epoch, so 40 epochs of the same schedule.
- ``mfer``: Xu et al. (2024), ConvNeXt-Base with DS attention, the multiscale classifier and the DSF
  loss (models/mfer.py), with its authors' recipe: AdamW (weight decay 0.01) at lr 1e-3, x0.95 after every
  epoch, batch 32, 100 epochs (``configs/rafdb.py:model=mfer``). ``--config.model.mfer.backbone_weights=``
  a torchvision ``convnext_base`` state dict starts it from ImageNet weights, as the authors do.

Arguments (``configs/rafdb.py:model=mfer,image_size=224,batch=32,epochs=100,lr=0.001``): image_size, the
face crop side the model takes (default 224, the ImageNet-style input the static papers feed their
backbones; the shards must hold crops at least this large, ``--image-size``); batch, epochs, lr, whose
defaults are the model's recipe (dfer: 64, 40, 1e-3; mfer: 32, 100, 1e-3).

Augmentation as the static field uses it (our reading of the common ResNet recipes on RAF-DB), for every
model: random resized crop over 80-100% of the face, horizontal flip (key-points mirrored), random erasing
(p 0.5, 2-25% of the face, as DAN's recipe).
RAF-DB's test set is imbalanced: report WAR (accuracy) and UAR (mean class accuracy) both.
Shards: ``python -m data_prep.build --dataset rafdb --root /path/to/RAF-DB/basic --out data/rafdb --image-size 224``.
"""

from dferjax import models
from dferjax.config import base_config, parse_config_arg

DEFAULTS = {"model": "dfer", "image_size": 224, "batch": 64, "epochs": 40, "lr": 1e-3}


def get_config(arg=None):
    model = parse_config_arg(arg, DEFAULTS, "configs/rafdb.py")["model"]
    defaults = models.recipe_defaults(model, DEFAULTS)                 # batch, epochs, lr: the model's recipe
    args = parse_config_arg(arg, defaults, "configs/rafdb.py")
    config = base_config(models.default_config())
    config.dataset = "rafdb"
    models.select_still_image(config, model)      # one frame, model B for dfer, the model's recipe
    config.model[model].image_size = args["image_size"]
    config.data.dir = "data/rafdb"
    config.data.crop_scale = (0.8, 1.0)
    config.data.random_erasing = 0.5              # RandomErasing(scale=(0.02, 0.25)), as DAN's RAF-DB recipe
    config.data.erasing_scale = (0.02, 0.25)
    config.train.batch_size = args["batch"]
    config.train.eval_batch_size = args["batch"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["epochs"] // 2, args["epochs"] * 3 // 4)   # the step schedule's (dfer)
    return config
