"""RAF-DB basic (Li, Deng, Du 2017): 7 classes, still images, train / test. ``configs/rafdb.py``.

The model is the paper's per-frame network on one image (Huang et al. 2024, Table 9's spatial path,
model B: ResNet18 + triplet attention, landmark pooling, key-point GCN, region fusion, the Eq. 5 head
as the classifier). Arguments (``configs/rafdb.py:image_size=224,batch=64,epochs=40,lr=0.001``):

- image_size: face crop side the model takes (default 224, the ImageNet-style input the static
  papers feed a ResNet; the shards must hold crops at least this large, ``--image-size``);
- batch, epochs, lr: Adam (the paper's b1 0.9, b2 0.99) at ``lr``, x0.1 at half and three quarters of
  ``epochs``. Our reading: the paper trains clips for 80 epochs; still-image sets are 2-4x larger per
  epoch, so 40 epochs of the same schedule.

Augmentation as the static field uses it (our reading of the common ResNet recipes on RAF-DB): random
resized crop over 80-100% of the face, horizontal flip (key-points mirrored), random erasing
(p 0.5, 2-25% of the face, as DAN's recipe).
RAF-DB's test set is imbalanced: report WAR (accuracy) and UAR (mean class accuracy) both.
Shards: ``python -m data_prep.build --dataset rafdb --root /path/to/RAF-DB/basic --out data/rafdb --image-size 224``.
"""

from dferjax import models
from dferjax.config import base_config, one_frame, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"image_size": 224, "batch": 64, "epochs": 40, "lr": 1e-3}, "configs/rafdb.py")
    config = base_config(models.default_config())
    config.dataset = "rafdb"
    one_frame(config)
    models.apply_variant(config.model.dfer, "B")
    config.variant = "B"
    config.model.dfer.image_size = args["image_size"]
    config.data.dir = "data/rafdb"
    config.data.crop_scale = (0.8, 1.0)
    config.data.random_erasing = 0.5              # RandomErasing(scale=(0.02, 0.25)), as DAN's RAF-DB recipe
    config.data.erasing_scale = (0.02, 0.25)
    config.train.batch_size = args["batch"]
    config.train.eval_batch_size = args["batch"]
    config.train.epochs = args["epochs"]
    config.train.learning_rate = args["lr"]
    config.train.lr_decay_epochs = (args["epochs"] // 2, args["epochs"] * 3 // 4)
    return config
