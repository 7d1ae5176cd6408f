"""Tests of dferjax.models.pretrained: torchvision ResNet18 state dicts -> our NHWC nnx backbone.

The main check is an independent computation: a ResNet18 trunk written here in plain torch.nn
after torchvision's architecture (torchvision itself is not a dependency), with random weights and
random BatchNorm running statistics, is saved with torch.save, loaded through our loader, and both
networks must give the same feature map for the same images. The other tests need no PyTorch:
safetensors/npz round trips checked against hand-transposed arrays, and the error cases.

Models are built with nnx.eval_shape (abstract arrays; building real ones compiles every initialiser,
~15 s on CPU): a strict load must then write every variable, or the forward pass would fail on the
abstract ones left over. Tests that need earlier values first load a full random state dict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from dferjax.models.dfer import DFERModel
from dferjax.models.pretrained import init_backbone_from, load_resnet18_weights, load_state_dict
from dferjax.models.resnet import ResNet18

TINY = (8, 8, 16, 16)
TORCHVISION = (64, 128, 256, 512)
# Stride of the first block of layer1..4, written out here rather than imported from resnet.py.
STRIDES = {32: (1, 2, 2, 2), 16: (1, 2, 2, 1), 8: (1, 2, 1, 1)}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
TOLERANCE = 1e-4
"""Max |ours - torch| / max |torch| over the final feature map, both in float32."""


def random_state_dict(widths: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """A torchvision-named ResNet18 state dict (with fc and num_batches_tracked) of random numpy arrays."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        sd[name + ".weight"] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)

    def bn(name: str, ch: int) -> None:
        sd[name + ".weight"] = rng.uniform(0.5, 1.5, ch).astype(np.float32)
        sd[name + ".bias"] = rng.normal(0, 0.2, ch).astype(np.float32)
        sd[name + ".running_mean"] = rng.normal(0, 0.2, ch).astype(np.float32)
        sd[name + ".running_var"] = rng.uniform(0.5, 2.0, ch).astype(np.float32)
        sd[name + ".num_batches_tracked"] = np.array(7, np.int64)

    conv("conv1", 3, widths[0], 7)
    bn("bn1", widths[0])
    cin = widths[0]
    for stage, (width, stride) in enumerate(zip(widths, STRIDES[32]), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}."
            conv(p + "conv1", cin, width, 3)
            bn(p + "bn1", width)
            conv(p + "conv2", width, width, 3)
            bn(p + "bn2", width)
            if block == 0 and (stride != 1 or cin != width):
                conv(p + "downsample.0", cin, width, 1)
                bn(p + "downsample.1", width)
            cin = width
    sd["fc.weight"] = rng.normal(0, 0.01, (1000, widths[3])).astype(np.float32)
    sd["fc.bias"] = np.zeros(1000, np.float32)
    return sd


def make_backbone(widths: tuple[int, ...], output_stride: int = 16,
                  state_dict: dict[str, np.ndarray] | None = None) -> ResNet18:
    """An abstract ResNet18 (see the module docstring), made concrete by loading ``state_dict`` if given."""
    backbone = nnx.eval_shape(lambda: ResNet18(widths=widths, output_stride=output_stride, rngs=nnx.Rngs(0)))
    if state_dict is not None:
        load_resnet18_weights(backbone, state_dict)
    return backbone


def num_variables(backbone: ResNet18) -> int:
    return len(list(nnx.to_flat_state(nnx.state(backbone))))


def torch_resnet18(torch, widths: tuple[int, ...], output_stride: int):
    """torchvision's resnet18 trunk (same module names) with the first-block strides of ``output_stride``."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Trunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = widths[0]
            for i, (width, stride) in enumerate(zip(widths, STRIDES[output_stride]), start=1):
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1)))
                cin = width
            self.fc = nn.Linear(cin, 1000)      # present in torchvision checkpoints; the loader ignores it

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    return Trunk()


def randomise(torch, net) -> None:
    """Non-trivial weights and BatchNorm running statistics everywhere."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0, (2 / fan_in) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(123)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_matches_pytorch_resnet18(tmp_path: Path, output_stride: int) -> None:
    torch = pytest.importorskip("torch", reason="the equivalence test needs PyTorch (pip install 'dferjax[torch]')")
    torch.manual_seed(output_stride)
    net = torch_resnet18(torch, TORCHVISION, output_stride)
    randomise(torch, net)
    net.eval()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)

    backbone = make_backbone(TORCHVISION, output_stride)
    report = init_backbone_from(type("Model", (), {"backbone": backbone})(), path)   # duck-typed DFERModel
    # stem 1 + 4, 8 blocks x (2 + 2 x 4), downsample 1 + 4 in layer2..4
    assert report["loaded"] == num_variables(backbone) == 5 + 8 * 10 + 3 * 5
    assert report["missing"] == []
    assert "fc.weight" in report["ignored"] and "layer1.0.bn1.num_batches_tracked" in report["ignored"]

    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    ours = np.asarray(backbone(images, train=False))
    x = (images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        ref = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy().transpose(0, 2, 3, 1)
    assert ours.shape == ref.shape == (2, 64 // output_stride, 64 // output_stride, 512)
    scale = np.abs(ref).max()
    rel = np.abs(ours - ref).max() / scale
    print(f"output stride {output_stride}: max |diff| {np.abs(ours - ref).max():.3g}, activation scale "
          f"{scale:.3g}, relative {rel:.3g}")
    assert scale > 0.1 and rel < TOLERANCE


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip_transposes_kernels(tmp_path: Path, suffix: str) -> None:
    sd = random_state_dict(TINY)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".npz":
        np.savez(path, **sd)
    else:
        save_file(sd, str(path))
    loaded = load_state_dict(path)
    assert set(loaded) == set(sd)

    # Output stride 32: at 16, TINY's layer4 (16 -> 16 channels, stride 1) has no downsample to load.
    backbone = make_backbone(TINY, 32)
    report = load_resnet18_weights(backbone, loaded)
    assert report["loaded"] == num_variables(backbone)
    assert report["missing"] == []
    assert {"fc.weight", "fc.bias", "bn1.num_batches_tracked"} <= set(report["ignored"])
    assert all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in report["ignored"])

    w = sd["conv1.weight"]                                   # (O, I, kH, kW)
    kernel = np.asarray(backbone.conv1.kernel[...])          # (kH, kW, I, O)
    assert kernel.shape == (7, 7, 3, 8)
    for o, i, h, v in [(0, 0, 0, 0), (5, 2, 6, 1), (7, 1, 3, 4)]:
        assert kernel[h, v, i, o] == w[o, i, h, v]
    w = sd["layer2.0.downsample.0.weight"]
    np.testing.assert_array_equal(np.asarray(backbone.layer2[0].downsample[0].kernel[...])[0, 0], w[:, :, 0, 0].T)
    w = sd["layer4.1.conv2.weight"]
    assert np.asarray(backbone.layer4[1].conv2.kernel[...])[2, 0, 3, 9] == w[9, 3, 2, 0]
    bn = backbone.layer3[1].bn2
    for ours, theirs in [(bn.scale, "weight"), (bn.bias, "bias"), (bn.mean, "running_mean"), (bn.var, "running_var")]:
        np.testing.assert_array_equal(np.asarray(ours[...]), sd[f"layer3.1.bn2.{theirs}"])
    assert isinstance(bn.mean, nnx.BatchStat) and isinstance(bn.scale, nnx.Param)

    # Evaluation-mode batch norm uses the loaded running statistics.
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 8)).astype(np.float32)
    p = "bn1."
    expected = (x - sd[p + "running_mean"]) / np.sqrt(sd[p + "running_var"] + 1e-5) * sd[p + "weight"] + sd[p + "bias"]
    np.testing.assert_allclose(np.asarray(backbone.bn1(x, use_running_average=True)), expected, rtol=1e-5, atol=1e-5)


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    backbone = make_backbone(TINY, state_dict=random_state_dict(TINY, seed=1))
    before = np.asarray(backbone.conv1.kernel[...]).copy()
    with pytest.raises(ValueError, match=r"conv1\.weight.*\(64, 3, 7, 7\).*\(8, 3, 7, 7\).*widths"):
        load_resnet18_weights(backbone, random_state_dict(TORCHVISION))
    sd = random_state_dict(TINY)
    sd["layer3.0.bn1.running_var"] = np.ones(15, np.float32)
    with pytest.raises(ValueError, match=r"layer3\.0\.bn1\.running_var.*\(15,\).*\(16,\)"):
        load_resnet18_weights(backbone, sd)
    np.testing.assert_array_equal(np.asarray(backbone.conv1.kernel[...]), before)   # nothing written


def test_missing_keys_strict_and_not(tmp_path: Path) -> None:
    sd = random_state_dict(TINY)
    del sd["layer3.1.bn2.running_var"], sd["layer2.0.downsample.0.weight"]
    backbone = make_backbone(TINY, state_dict=random_state_dict(TINY, seed=1))
    kept = np.asarray(backbone.layer3[1].bn2.var[...]).copy()
    with pytest.raises(ValueError, match=r"lacks 2 backbone keys: layer2\.0\.downsample\.0\.weight, "
                                         r"layer3\.1\.bn2\.running_var.*strict=False"):
        load_resnet18_weights(backbone, sd)
    report = load_resnet18_weights(backbone, sd, strict=False)
    assert report["missing"] == ["layer2.0.downsample.0.weight", "layer3.1.bn2.running_var"]
    assert report["loaded"] == num_variables(backbone) - 2
    np.testing.assert_array_equal(np.asarray(backbone.layer3[1].bn2.var[...]), kept)
    np.testing.assert_array_equal(np.asarray(backbone.layer3[1].bn2.mean[...]), sd["layer3.1.bn2.running_mean"])
    with pytest.raises(ValueError, match="none of the .* ResNet18 backbone keys"):
        load_resnet18_weights(backbone, {"head.weight": np.zeros((3, 3), np.float32)}, strict=False)


def test_prefixes_are_stripped(tmp_path: Path) -> None:
    sd = random_state_dict(TINY)
    path = tmp_path / "ddp.safetensors"
    save_file({"module." + k: v for k, v in sd.items()}, str(path))
    loaded = load_state_dict(path)
    assert set(loaded) == set(sd)

    # A whole model's dict: the backbone under "module.backbone.", other parts kept (and ignored).
    whole = {"module.backbone." + k: v for k, v in sd.items()}
    whole["module.head.weight"] = np.zeros((7, 16), np.float32)
    backbone = make_backbone(TINY)
    report = load_resnet18_weights(backbone, whole)
    assert report["loaded"] == num_variables(backbone)
    assert "module.head.weight" in report["ignored"]
    np.testing.assert_array_equal(np.asarray(backbone.bn1.mean[...]), sd["bn1.running_mean"])


def test_init_backbone_from_on_dfer_model(tmp_path: Path) -> None:
    model = nnx.eval_shape(lambda: DFERModel(num_frames=4, widths=TINY, node_dim=8, num_heads=2, head_dim=8,
                                             mlp_dim=16, num_layers=2, rngs=nnx.Rngs(0)))
    sd = random_state_dict(TINY, seed=3)
    path = tmp_path / "r18.safetensors"
    save_file(sd, str(path))
    report = init_backbone_from(model, path)
    assert report["loaded"] == num_variables(model.backbone) and report["missing"] == []
    np.testing.assert_array_equal(np.asarray(model.backbone.layer1[0].conv1.kernel[...]),
                                  sd["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))


def test_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_state_dict(tmp_path / "nowhere.safetensors")
    odd = tmp_path / "weights.h5"
    odd.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"weights\.h5.*\.safetensors"):
        load_state_dict(odd)
    pt = tmp_path / "weights.pth"
    pt.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "torch", None)       # as if PyTorch were not installed
    with pytest.raises(ImportError, match=r"weights\.pth.*pip install torch.*safetensors"):
        load_state_dict(pt)


def test_torch_checkpoint_container(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="reading .pth files needs PyTorch")
    sd = random_state_dict(TINY)
    checkpoint = {"epoch": 3, "best_acc": 0.5,
                  "state_dict": {"module." + k: torch.from_numpy(v) for k, v in sd.items()},
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    checkpoint["state_dict"]["module.bn1.weight"] = torch.from_numpy(sd["bn1.weight"]).to(torch.bfloat16)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(checkpoint, path)
    loaded = load_state_dict(path)
    assert set(loaded) == set(sd)
    assert loaded["bn1.weight"].dtype == np.float32
    np.testing.assert_allclose(loaded["bn1.weight"], sd["bn1.weight"], rtol=1e-2)
    np.testing.assert_array_equal(loaded["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


class _Payload:
    """Pickles to a call of exec(): what a malicious checkpoint would do on a plain pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="weights_only loading is PyTorch's")
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "extra": _Payload(marker)}, path)
    with pytest.raises(ValueError, match=r"evil\.pt.*refused"):
        load_state_dict(path)
    assert not marker.exists()
    # Control: the payload is live, a full unpickling runs it.
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_init_backbone_from_on_the_frame_mean_model_and_a_model_without_backbone(tmp_path: Path) -> None:
    from dferjax.models import FrameMeanModel
    model = nnx.eval_shape(lambda: FrameMeanModel(widths=TINY, rngs=nnx.Rngs(0)))
    sd = random_state_dict(TINY, seed=4)
    path = tmp_path / "r18.safetensors"
    save_file(sd, str(path))
    report = init_backbone_from(model, path)
    assert report["loaded"] == num_variables(model.backbone) and report["missing"] == []
    np.testing.assert_array_equal(np.asarray(model.backbone.conv1.kernel[...]),
                                  sd["conv1.weight"].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match="no ResNet18 backbone"):
        init_backbone_from(object(), path)
