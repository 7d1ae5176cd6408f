"""The 3D-ResNet18 (``r3d18``) and TDRAG (``tdrag``): torchvision equality, the residual attention and the
GRU against NumPy, shapes, keyframes by redundancy, gradients, dtypes and a tiny training run."""

from __future__ import annotations

import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dferjax import models, train
from dferjax.data import input_pipeline as ip
from dferjax.data import keyframes as kf
from dferjax.data import records, synthetic
from dferjax.data.clips import PrepConfig
from dferjax.engine import checkpoints as ckpt
from dferjax.engine.inputs import example_spec
from dferjax.models.pretrained import init_backbone_from, load_r3d18_weights
from dferjax.models.r3d import R3D18, R3D18Model, conv3d_as_2d, time_steps
from dferjax.models.tdrag import GRUHead, TDRAGModel

from tests.conftest import TESTDATA, tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY_WIDTHS = (4, 8, 8, 8)


def _frames(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _param_leaves(module):
    return jax.tree.leaves(nnx.state(module, nnx.Param))


def _build(factory):
    """``factory()`` initialised as ``models.build_model`` does: one program, compiled without backend
    optimisation on the CPU (op by op, every initialiser would be a compilation of its own)."""
    graphdef, _ = nnx.split(nnx.eval_shape(factory))
    init = jax.jit(lambda: nnx.split(factory())[1]).lower()
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return nnx.merge(graphdef, init.compile(compiler_options=options)())


def _run(fn, *args):
    """``fn(*args)`` (modules among the args) compiled as one program, as the engine runs models."""
    return nnx.jit(fn)(*args)


# --- r3d18 equals torchvision's r3d_18 -------------------------------------------------------------

def test_r3d18_equals_torchvision_r3d_18_on_shared_weights(tmp_path):
    """torchvision's r3d_18 (eval mode) with random weights and batch-norm statistics, saved as a .pth and
    loaded through init_backbone_from (torch.load weights_only), gives our r3d18's logits; the same file in
    tdrag's trunk, with every attention mask closed (last layer 0, bias -40) and torchvision's temporal
    strides, gives its pooled features."""
    torch = pytest.importorskip("torch")
    video = pytest.importorskip("torchvision.models.video")
    torch.manual_seed(0)
    net = video.r3d_18(weights=None, num_classes=7).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        net.fc.bias.uniform_(-0.1, 0.1)
    path = tmp_path / "r3d_18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)

    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 24, 24, 3), dtype=np.uint8)
    mean = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)
    x = (torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 255 - mean) / std      # N, C, T, H, W
    with torch.no_grad():
        expected = net(x).numpy()
        feats = net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))).flatten(1).numpy()

    model = _build(lambda: R3D18Model(num_classes=7, rngs=nnx.Rngs(0)))
    report = init_backbone_from(model, path)
    assert report["missing"] == [] and report["loaded"] == 8 * 2 * 5 + 5 + 3 * 5
    assert {"fc.weight", "fc.bias"} <= set(report["ignored"])
    model.fc.kernel[...] = jnp.asarray(net.fc.weight.detach().numpy().T)
    model.fc.bias[...] = jnp.asarray(net.fc.bias.detach().numpy())
    out = _run(lambda m, f: m({"frames": f}), model, jnp.asarray(frames))
    np.testing.assert_allclose(np.asarray(out.logits), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.embedding), feats, rtol=1e-4, atol=1e-4)

    tdrag = _build(lambda: TDRAGModel(num_classes=7, temporal_strides=(1, 2, 2, 2), attention_stages=(1, 2, 3, 4),
                                      gru_hidden=8, rngs=nnx.Rngs(1)))
    before = np.asarray(tdrag.backbone.mask2.conv[0].kernel[...])
    assert init_backbone_from(tdrag, path)["missing"] == []
    np.testing.assert_array_equal(np.asarray(tdrag.backbone.mask2.conv[0].kernel[...]), before)
    for mask in (tdrag.backbone.mask1, tdrag.backbone.mask2, tdrag.backbone.mask3, tdrag.backbone.mask4):
        mask.out.kernel[...] = jnp.zeros_like(mask.out.kernel[...])
        mask.out.bias[...] = jnp.full_like(mask.out.bias[...], -40.0)
    maps = _run(lambda m, f: m.backbone(f, False), tdrag, jnp.asarray(frames))
    np.testing.assert_allclose(np.asarray(maps).mean(axis=(1, 2, 3)), feats, rtol=1e-4, atol=1e-4)


def test_r3d18_weights_of_another_width_are_refused_naming_the_key():
    trunk = nnx.eval_shape(lambda: R3D18(widths=TINY_WIDTHS, rngs=nnx.Rngs(0)))
    full = {"stem.0.weight": np.zeros((64, 3, 3, 7, 7), np.float32)}
    with pytest.raises(ValueError, match="model.<name>.widths"):
        load_r3d18_weights(trunk, full, strict=False)
    with pytest.raises(ValueError, match="is it a torchvision-style r3d_18"):
        load_r3d18_weights(trunk, {"conv1.weight": np.zeros((4, 3, 7, 7), np.float32)})


@pytest.mark.parametrize("kernel,stride", [((3, 3, 3), (1, 1, 1)), ((3, 3, 3), (2, 2, 2)), ((3, 7, 7), (1, 2, 2)),
                                           ((1, 1, 1), (2, 2, 2))])
def test_3d_convolution_as_one_2d_convolution_equals_xla_3d(kernel, stride):
    """The CPU path of Conv3d (temporal taps stacked on the channels) against XLA's 3D convolution."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 5, 9, 9, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(*kernel, 3, 4)), jnp.float32)
    padding = tuple((n // 2, n // 2) for n in kernel)
    expected = jax.lax.conv_general_dilated(x, k, stride, padding, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
                                            precision="highest")
    np.testing.assert_allclose(np.asarray(conv3d_as_2d(x, k, stride, padding)), np.asarray(expected),
                               rtol=1e-4, atol=1e-4)


# --- the residual attention, the shapes, the GRU ---------------------------------------------------

def test_residual_attention_with_zero_last_mask_layer_is_one_plus_sigmoid_bias_times_the_trunk():
    """Stage 2 with attention, its mask's last 1x1x1 layer at zero weights and bias b: the stage's output
    is (1 + sigmoid(b)) * T(x), T the stage's second block on its first block's output (NumPy)."""
    trunk = _build(lambda: R3D18(widths=TINY_WIDTHS, attention_stages=(2,), rngs=nnx.Rngs(0)))
    x = _run(lambda m, f: m.stage_forward(1, m.stem_forward(f, False), False), trunk, _frames((2, 4, 24, 24, 3)))
    x1, t, out, mask = _run(lambda m, v: (m.layer2[0](v, False), m.layer2[1](m.layer2[0](v, False), False),
                                          m.stage_forward(2, v, False), m.mask2(m.layer2[0](v, False), False)), trunk, x)
    # With its own weights the mask is a map into (0, 1) of the trunk's shape, and it changes the output.
    assert mask.shape == t.shape == x1.shape and bool(jnp.all((mask > 0) & (mask < 1))) and float(jnp.std(mask)) > 0
    np.testing.assert_allclose(np.asarray(out), np.asarray((1 + mask) * t), rtol=1e-5, atol=1e-6)
    b = np.random.default_rng(1).normal(0, 2, TINY_WIDTHS[1]).astype(np.float32)
    trunk.mask2.out.kernel[...] = jnp.zeros_like(trunk.mask2.out.kernel[...])
    trunk.mask2.out.bias[...] = jnp.asarray(b)
    out = np.asarray(_run(lambda m, v: m.stage_forward(2, v, False), trunk, x))
    expected = (1 + 1 / (1 + np.exp(-b.astype(np.float64)))) * np.asarray(t, np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_frames,strides,steps", [
    (16, (1, 2, 2, 2), 2), (8, (1, 2, 2, 2), 1), (16, (1, 2, 1, 1), 8), (8, (1, 2, 1, 1), 4),
    (16, (1, 1, 1, 1), 16)])
def test_trunk_shapes_for_frames_and_temporal_strides(num_frames, strides, steps):
    """r3d_18's strides leave 2 time steps of 16 frames; TDRAG's default (1, 2, 1, 1) leaves 8 for the GRU."""
    assert time_steps(num_frames, strides) == steps
    model = nnx.eval_shape(lambda: TDRAGModel(widths=TINY_WIDTHS, temporal_strides=strides, gru_hidden=8,
                                              rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    frames = jax.ShapeDtypeStruct((2, num_frames, 32, 32, 3), jnp.uint8)
    maps = jax.eval_shape(lambda s, f: nnx.merge(graphdef, s).backbone(f, False), state, frames)
    assert maps.shape == (2, steps, 2, 2, TINY_WIDTHS[-1])
    out = jax.eval_shape(lambda s, f: nnx.merge(graphdef, s)({"frames": f}), state, frames)
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 8)


def _numpy_gru(xs, wi, bi, wh, output):
    """An independent GRU: r, z, n gates in that order of the 3H columns, h0 = 0, no recurrent bias."""
    h = np.zeros((xs.shape[0], wh.shape[0]))
    sig = lambda v: 1 / (1 + np.exp(-v))                                     # noqa: E731
    states = []
    for t in range(xs.shape[1]):
        gx, gh = xs[:, t] @ wi + bi, h @ wh
        hid = h.shape[1]
        r = sig(gx[:, :hid] + gh[:, :hid])
        z = sig(gx[:, hid:2 * hid] + gh[:, hid:2 * hid])
        n = np.tanh(gx[:, 2 * hid:] + r * gh[:, 2 * hid:])
        h = (1 - z) * n + z * h
        states.append(h)
    return states[-1] if output == "last" else np.mean(states, axis=0)


@pytest.mark.parametrize("output", ["last", "mean"])
def test_gru_head_matches_a_numpy_gru(output):
    head = _build(lambda: GRUHead(5, 6, output, rngs=nnx.Rngs(0)))
    head.rnn.cell.dense_i.bias[...] = jnp.asarray(np.random.default_rng(3).normal(0, 0.5, 18), jnp.float32)
    xs = np.random.default_rng(4).normal(size=(3, 7, 5)).astype(np.float32)
    cell = head.rnn.cell
    expected = _numpy_gru(xs.astype(np.float64), np.asarray(cell.dense_i.kernel[...], np.float64),
                          np.asarray(cell.dense_i.bias[...], np.float64), np.asarray(cell.dense_h.kernel[...], np.float64),
                          output)
    np.testing.assert_allclose(np.asarray(_run(lambda m, v: m(v), head, jnp.asarray(xs))), expected,
                               rtol=1e-5, atol=1e-6)


def test_tdrag_logits_are_the_gru_of_the_pooled_trunk_maps():
    model = _build(lambda: TDRAGModel(widths=TINY_WIDTHS, gru_hidden=6, gru_output="mean", rngs=nnx.Rngs(0)))
    frames = _frames((2, 8, 32, 32, 3))
    maps, out = _run(lambda m, f: (m.backbone(f, False), m({"frames": f})), model, frames)
    maps = np.asarray(maps, np.float64)
    cell = model.gru.rnn.cell
    emb = _numpy_gru(maps.mean(axis=(2, 3)), np.asarray(cell.dense_i.kernel[...], np.float64),
                     np.asarray(cell.dense_i.bias[...], np.float64), np.asarray(cell.dense_h.kernel[...], np.float64),
                     "mean")
    np.testing.assert_allclose(np.asarray(out.embedding), emb, rtol=1e-4, atol=1e-5)
    expected = emb @ np.asarray(model.head.kernel[...], np.float64) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(np.asarray(out.logits), expected, rtol=1e-4, atol=1e-5)


def test_bad_temporal_strides_and_attention_stages_name_the_key():
    with pytest.raises(ValueError, match="temporal_strides"):
        nnx.eval_shape(lambda: R3D18(widths=TINY_WIDTHS, temporal_strides=(1, 3, 1, 1), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="attention_stages"):
        nnx.eval_shape(lambda: R3D18(widths=TINY_WIDTHS, attention_stages=(5,), rngs=nnx.Rngs(0)))
    config = tiny_config("tdrag", gru_output="first")
    with pytest.raises(models.ModelConfigError, match="model.tdrag.gru_output"):
        models.check_config(config.model)


# --- gradients and dtypes -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["r3d18", "tdrag"])
def test_every_parameter_receives_a_gradient(name):
    config = tiny_config(name, widths=TINY_WIDTHS, image_size=32)
    if name == "tdrag":
        config.model.tdrag.update(gru_hidden=8, attention_stages=(1, 2, 3, 4))
    model = models.build_model(config.model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch = {"frames": _frames((2, 4, 32, 32, 3)), "label": jnp.array([1, 3])}

    def loss(p):
        m = nnx.merge(graphdef, p, rest, copy=True)
        return m.loss(m(batch, train=True), batch["label"])[0]

    leaves = jax.tree_util.tree_flatten_with_path(jax.jit(jax.grad(loss))(params))[0]
    dead = [jax.tree_util.keystr(path) for path, g in leaves if not np.any(np.asarray(g) != 0)]
    assert not dead, f"parameters without a gradient: {dead}"
    assert len(leaves) == len(_param_leaves(model))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["r3d18", "tdrag"])
def test_float32_and_bfloat16_compile(name, dtype):
    config = tiny_config(name, widths=TINY_WIDTHS, image_size=32, dtype=dtype)
    if name == "tdrag":
        config.model.tdrag.gru_hidden = 8
    graphdef, state = nnx.split(models.build_model(config.model))
    forward = jax.jit(lambda s, f: nnx.merge(graphdef, s)({"frames": f}).logits)
    logits = forward(state, _frames((2, 4, 32, 32, 3)))
    assert logits.dtype == jnp.float32 and logits.shape == (2, 7) and bool(jnp.all(jnp.isfinite(logits)))


# --- keyframes by redundancy ---------------------------------------------------------------------------

def _level_frames(levels, size=32, seed=0):
    """One frame per level: grey noise (std 5) around that level, RGB uint8."""
    rng = np.random.default_rng(seed)
    g = np.clip(np.asarray(levels, np.float64)[:, None, None] + rng.normal(0, 5, (len(levels), size, size)), 0, 255)
    return np.repeat(np.rint(g).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("measure", kf.MEASURES)
def test_keyframes_keep_distinct_frames_and_drop_repeats(measure):
    distinct = _level_frames(20 + 14 * np.arange(16))
    np.testing.assert_array_equal(kf.select_keyframes(distinct, measure, 0.99), np.arange(16))
    held = np.repeat(_level_frames([40, 90, 140, 190]), 4, axis=0)               # 4 frames, each 4 times
    np.testing.assert_array_equal(kf.select_keyframes(held, measure, 0.99), [0, 4, 8, 12])
    assert kf.redundancy(kf.grey(held[0]), kf.grey(held[1]), measure) == pytest.approx(1.0)
    np.testing.assert_array_equal(kf.select_keyframes(held, measure, 1.0), np.arange(16))   # nothing above 1


def test_unknown_keyframe_measure_names_the_key():
    with pytest.raises(ValueError, match="model.<name>.keyframes"):
        kf.select_keyframes(_level_frames([10, 20]), "psnr", 0.9)


def _record(frames: np.ndarray, quality: int = 95) -> bytes:
    clip = types.SimpleNamespace(frames=frames, keypoints=np.full((len(frames), 18, 2), 16, np.float32),
                                 sources=np.zeros(len(frames), np.int8), frame_indices=np.arange(len(frames)),
                                 num_source_frames=len(frames), fps=25.0, notes=[])
    return records.encode_clip("c", 0, "test", "", clip, quality)


KEY_SPEC = ip.ExampleSpec(image_size=32, num_segments=8, frames_per_segment=1, heatmap_size=None,
                          crop_scale=(1.0, 1.0), flip=False, keyframes="histogram", keyframe_threshold=0.99)


def test_keyframe_selection_is_the_same_in_training_test_and_predict():
    """4 distinct frames held 4 times each: the record keeps the 4 (``keyframes`` = 4) and repeats them
    evenly to 8, in training as at test and in predict's clip_inputs; 12 distinct frames held twice: test
    and predict take the same 8 keyframes, training random ones among the same 12."""
    for distinct, hold in ((4, 4), (12, 2)):
        stored = np.repeat(_level_frames(20 + 200 // distinct * np.arange(distinct)), hold, axis=0)
        record = _record(stored)
        decoded = np.stack([records.decode_jpeg(records.encode_jpeg(f, 95)) for f in stored])
        kept = kf.select_keyframes(decoded, "histogram", 0.99)
        np.testing.assert_array_equal(kept, np.arange(distinct) * hold)
        test = ip.record_example(record, KEY_SPEC, None)
        assert int(test["keyframes"]) == distinct
        frames, _, _, take = ip.clip_inputs(stored, np.full((len(stored), 18, 2), 16, np.float32), KEY_SPEC, 95)
        np.testing.assert_array_equal(frames, test["frames"])
        assert set(take.tolist()) <= set(kept.tolist()) and np.all(np.diff(take) >= 0)
        if distinct < KEY_SPEC.num_frames:
            np.testing.assert_array_equal(take, np.repeat(kept, KEY_SPEC.num_frames // distinct))
        else:
            assert len(set(take.tolist())) == KEY_SPEC.num_frames
        np.testing.assert_array_equal(frames, decoded[take])
        for seed in range(3):
            example = ip.record_example(record, KEY_SPEC, np.random.default_rng(seed))
            assert int(example["keyframes"]) == distinct
            picked = [int(np.argmin(np.abs(decoded[kept].astype(int) - f.astype(int)).sum(axis=(1, 2, 3))))
                      for f in example["frames"]]
            np.testing.assert_array_equal(example["frames"], decoded[kept[picked]])
            assert np.all(np.diff(picked) >= 0)
            if distinct < KEY_SPEC.num_frames:
                np.testing.assert_array_equal(example["frames"], test["frames"])


def test_keyframe_settings_travel_from_the_model_section_to_the_example_spec():
    config = tiny_config("tdrag")
    config.data.num_segments = 4
    config.data.frames_per_segment = 1
    spec = example_spec(config)
    assert (spec.keyframes, spec.keyframe_threshold) == ("ssim", 0.99)
    config.model.name = "r3d18"
    assert example_spec(config).keyframes == ""
    assert "keyframes: 3 of 20" in kf.keyframe_note(3, 20, 16) and "repeated evenly" in kf.keyframe_note(3, 20, 16)


# --- configs and a tiny training run -------------------------------------------------------------------

def test_configs_select_the_model_with_its_recipe():
    from dferjax.config import config_file_module
    for path, arg in (("configs/dfew.py", "fold=2,model=r3d18"), ("configs/mafw.py", "model=tdrag"),
                      ("configs/ferv39k.py", "model=tdrag")):
        config = config_file_module(str(ROOT / path)).get_config(arg)
        assert config.model.name == arg.rpartition("=")[2]
        assert (config.train.lr_schedule, config.train.lr_decay_factor, config.train.epochs) == ("exponential", 0.9, 100)
        assert (config.data.num_segments, config.data.frames_per_segment, config.data.flip) == (16, 1, False)
        assert models.input_spec(config.model).num_frames == 16
    demo = config_file_module(str(ROOT / "configs/demo.py")).get_config("model=tdrag")
    assert demo.model.name == "tdrag" and demo.model.tdrag.widths == TDRAGModel.TINY["widths"]
    assert demo.data.num_segments * demo.data.frames_per_segment == demo.model.tdrag.num_frames == 8
    assert demo.train.batch_size == 8 and demo.train.learning_rate == pytest.approx(1e-3 * (8 / 64) ** 0.5)
    assert config_file_module(str(ROOT / "configs/demo.py")).get_config().train.learning_rate == 1e-3
    assert config_file_module(str(ROOT / "configs/dfew.py")).get_config().model.name == "dfer"


def test_tdrag_trains_end_to_end_through_the_engine(tmp_path):
    shards = tmp_path / "shards"
    synthetic.make_demo_set(shards, num_train=8, num_test=4,
                            prep=PrepConfig(image_size=48, max_frames=8, min_frames=8), progress=False)
    workdir = tmp_path / "tdrag"
    args = ["--config", str(ROOT / "configs" / "demo.py") + ":model=tdrag", f"--config.data.dir={shards}",
            "--workdir", str(workdir), "--config.data.num_segments=4", "--config.model.tdrag.num_frames=4",
            "--config.model.tdrag.image_size=32", "--config.model.tdrag.widths=(4,8,8,8)",
            "--config.model.tdrag.gru_hidden=8", "--config.train.batch_size=4", "--config.train.eval_batch_size=4",
            "--config.train.epochs=1", "--config.runtime.log_every=1", "--config.runtime.progress=False",
            "--config.runtime.cpu_devices=0"]
    assert train.main(args) == 0
    results = json.loads((workdir / ckpt.RESULTS_FILE).read_text())
    assert results["model"] == "tdrag" and results["best"]["num_samples"] == 4
    model, config, _ = ckpt.load_model(workdir)
    assert isinstance(model, TDRAGModel)
    assert config.train.lr_schedule == "exponential" and example_spec(config).keyframes == "ssim"
    # predict says which model the run holds, and how many keyframes a video gave
    from dferjax import predict
    predictor = predict.Predictor(workdir)
    assert "model tdrag (4 frames of 32 px among ssim keyframes at 0.99)" in predictor.describe()
    video = TESTDATA / "videos" / "single_face.mp4"
    if video.exists():
        result = predictor.predict(video)
        kept = len(np.unique(result.take))
        assert any(n.startswith(f"keyframes: {kept} of {len(result.clip.frames)} stored frames") for n in result.notes)
        # and per window of a timeline: the keyframes the selection keeps among that window's stored frames,
        # as many as the model takes at most (4)
        timeline = predictor.predict(video, window=1.0, stride=1.0)
        windows = timeline.to_dict()["windows"]
        assert len(windows) >= 2
        for window, entry in zip(timeline.windows, windows):
            stored = np.stack([records.decode_jpeg(records.encode_jpeg(f, predictor.jpeg_quality))
                               for f in window.clip.frames])          # as a shard holds them
            expected = kf.select_keyframes(stored, "ssim", 0.99)
            assert entry["keyframes"] == window.keyframes == min(len(expected), 4)
