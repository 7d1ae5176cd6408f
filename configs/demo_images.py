"""The still-image demo: ``python -m dferjax.train --config configs/demo_images.py --workdir runs/demo_images``.

Procedurally drawn faces (dferjax.data.synthetic, ``still=True``): each sample is one image, the apex
frame of a drawn clip, with seven expressions; built into ``data/demo_images`` on first use. The model
is the paper's per-frame network on one frame (Table 9's spatial path, model B: ResNet18 + triplet
attention, landmark pooling, key-point GCN, region fusion, the Eq. 5 head as the classifier) at its
tiny setting (``models.apply_tiny``): 64x64 faces.

``configs/demo_images.py:model=mfer`` trains MFER (Xu et al. 2024, models/mfer.py) at its tiny setting
instead (a 5-block ConvNeXt of widths 16-128 with DS attention, the multiscale classifier and the DSF loss)
with its authors' optimiser (AdamW, weight decay 0.01, lr x0.95 per epoch) under the demo's schedule
(epochs, batch).
"""

import ml_collections

from dferjax import models
from dferjax.config import base_config, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"train": 2100, "test": 350, "epochs": 16, "model": "dfer"},
                            "configs/demo_images.py")
    config = base_config(models.default_config())
    models.apply_tiny(config.model)              # 64x64, narrow widths (each model's TINY)
    models.select_still_image(config, args["model"])   # one frame, model B for dfer; the demo's schedule below
    config.dataset = "synthetic_images"
    config.data.dir = "data/demo_images"
    config.data.crop_scale = (1.0, 1.0)          # no augmentation: the drawn set learns faster without
    config.data.flip = False
    config.train.batch_size = 32
    config.train.eval_batch_size = 70
    config.train.epochs = args["epochs"]
    config.train.lr_decay_epochs = (args["epochs"] - 2,) if args["epochs"] > 2 else ()   # none for 1-2 epochs
    config.runtime.log_every = 25
    config.runtime.cache_decoded = True          # decoded once, not every epoch
    config.runtime.cpu_devices = -1              # one JAX device per core: data parallel on the CPU

    config.synthetic = ml_collections.ConfigDict()   # how the set is drawn when data.dir lacks it
    config.synthetic.num_train = args["train"]
    config.synthetic.num_test = args["test"]
    config.synthetic.image_size = 64
    config.synthetic.max_frames = 1
    config.synthetic.still = True
    config.synthetic.seed = 0
    config.synthetic.workers = 2
    return config
