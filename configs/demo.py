"""The synthetic demo: ``python -m dferjax.train --config configs/demo.py --workdir runs/demo``.

Procedurally drawn faces with seven expressions (data_prep.synthetic), built into ``data/demo`` on
first use. The architecture is the paper's, shrunk to train in minutes on two CPU cores: 64x64 faces,
8 frames (4 segments x 2, all that is stored), narrower ResNet18 stages and a smaller temporal transformer.
"""

import ml_collections

from dferjax.config import base_config, parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, {"train": 1400, "test": 280, "epochs": 7}, "configs/demo.py")
    config = base_config()
    config.dataset = "synthetic"
    config.data.dir = "data/demo"
    config.data.image_size = 64
    config.data.num_segments = 4
    config.data.crop_scale = (1.0, 1.0)          # no augmentation: 1,400 clips learn faster without
    config.data.flip = False
    config.data.cache_decoded = True             # 165 MB: each clip's JPEGs are decoded once, not every epoch
    config.model.num_frames = 8
    config.model.widths = (16, 32, 64, 64)
    config.model.node_dim = 32
    config.model.num_layers = 1
    config.model.num_heads = 2
    config.model.head_dim = 16
    config.model.mlp_dim = 64
    config.train.batch_size = 8
    config.train.eval_batch_size = 70
    config.train.epochs = args["epochs"]
    config.train.lr_decay_epochs = (args["epochs"] - 1,)
    config.train.log_every = 25
    config.train.cpu_devices = -1                # one JAX device per core: data parallel on the CPU

    config.synthetic = ml_collections.ConfigDict()
    config.synthetic.num_train = args["train"]
    config.synthetic.num_test = args["test"]
    config.synthetic.image_size = 64
    config.synthetic.max_frames = 8        # all 8 are the model's input
    config.synthetic.seed = 0
    config.synthetic.workers = 2
    return config
