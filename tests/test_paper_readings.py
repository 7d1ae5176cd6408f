"""The readings of the paper made settings (issue 21): each changes what it says and nothing else.

``model.dfer.heatmap_norm`` (Eq. 2), ``model.dfer.score_weighting`` (Eq. 3) and
``model.dfer.spatial_head_input`` (Eq. 5, Table 9's models A and B), against NumPy on the same weights,
with tiny widths.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dferjax import keypoints, models
from dferjax.engine import checkpoints as ckpt
from dferjax.models import build_model
from dferjax.models.dfer import ADDED_KEYS, variant_of
from dferjax.models.gcn import KeypointGCN, weighted_adjacency
from dferjax.models.landmark_pooling import landmark_pool, match_resolution, normalise_heatmaps
from dferjax.summary import zero_inputs
from tests.conftest import tiny_config

RNG = np.random.default_rng(21)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def rendered_maps(n, side, sigma=1.0, image=48):
    """Peak-1 heat-maps (n, side, side, 18) of random key-points, as the data pipeline renders them."""
    points = RNG.uniform(0.1 * image, 0.9 * image, (n, keypoints.NUM_KEYPOINTS, 2)).astype(np.float32)
    return keypoints.render_heatmaps(points, (image, image), (side, side), sigma)


def batch(config, size=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = zero_inputs(models.input_spec(config.model), size)
    frames = jnp.asarray(rng.integers(0, 256, shapes["frames"].shape), jnp.uint8)
    side = shapes["heatmaps"].shape[2]
    maps = rendered_maps(size * shapes["heatmaps"].shape[1], side)
    return {"frames": frames, "heatmaps": jnp.asarray(maps.reshape(shapes["heatmaps"].shape))}


# --- heatmap_norm (Eq. 2) ------------------------------------------------------------------------

def test_sum_and_mean_maps_sum_to_one_and_average_to_one_per_keypoint_and_peak_is_untouched():
    maps = rendered_maps(3, 5)
    maps[1, :, :, 4] = 0.0                                     # a key-point without a fit
    summed = np.asarray(normalise_heatmaps(jnp.asarray(maps), "sum"))
    averaged = np.asarray(normalise_heatmaps(jnp.asarray(maps), "mean"))
    fitted = np.ones((3, 18), bool)
    fitted[1, 4] = False
    np.testing.assert_allclose(summed.sum(axis=(1, 2))[fitted], 1.0, rtol=1e-5)
    np.testing.assert_allclose(averaged.mean(axis=(1, 2))[fitted], 1.0, rtol=1e-5)
    assert not summed[1, :, :, 4].any() and not averaged[1, :, :, 4].any()        # stays zero, no NaN
    # Each map is only rescaled: the same shape.
    np.testing.assert_allclose(summed * maps.sum(axis=(1, 2), keepdims=True), maps, rtol=1e-5, atol=1e-7)
    peak = jnp.asarray(maps)
    assert normalise_heatmaps(peak, "peak") is peak
    with pytest.raises(ValueError, match="model.dfer.heatmap_norm"):
        normalise_heatmaps(peak, "Sum")


def test_equation_2_pools_the_heatmap_weighted_mean_of_f():
    """mean: v^j = sum_cells A^j F / sum_cells A^j, the A^j-weighted mean of F; sum: the same over the
    h w cells (Eq. 2's g is an average pool in every case, only the maps change); peak: as before."""
    f, maps = randn(3, 4, 4, 6), rendered_maps(3, 4)
    weighted = np.einsum("nhwc,nhwk->nkc", f, maps) / maps.sum(axis=(1, 2))[:, :, None]
    pooled = {norm: landmark_pool(jnp.asarray(f), jnp.asarray(maps), norm) for norm in ("peak", "sum", "mean")}
    np.testing.assert_allclose(np.asarray(pooled["mean"][0]), weighted, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pooled["sum"][0]) * 16, weighted, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pooled["peak"][0]), np.einsum("nhwc,nhwk->nkc", f, maps) / 16,
                               rtol=1e-4, atol=1e-5)
    for norm in ("sum", "mean"):                                # v_g is not touched
        assert np.array_equal(np.asarray(pooled[norm][1]), np.asarray(pooled["peak"][1]))


def test_maps_at_another_resolution_are_normalised_on_fs_grid():
    f, maps = randn(2, 3, 3, 5), rendered_maps(2, 7)
    on_grid = np.asarray(match_resolution(jnp.asarray(maps), (3, 3)))
    weighted = np.einsum("nhwc,nhwk->nkc", f, on_grid) / on_grid.sum(axis=(1, 2))[:, :, None]
    local, _ = landmark_pool(jnp.asarray(f), jnp.asarray(maps), "mean")
    np.testing.assert_allclose(np.asarray(local), weighted, rtol=1e-4, atol=1e-5)


def test_heatmap_norm_in_the_model_rescales_each_local_vector_and_nothing_else():
    config = tiny_config(num_frames=2, heatmap_norm="peak")
    peak = build_model(config.model, seed=3)
    inputs = batch(config)
    frames, maps = inputs["frames"], inputs["heatmaps"]
    local_peak, global_peak = peak.local_vectors(frames, maps)
    totals = np.asarray(maps).reshape(4, -1, 18).sum(axis=1)             # (B*N, 18), maps on F's 3x3 grid
    for norm, factor in (("mean", 9.0 / totals), ("sum", 1.0 / totals)):
        peak.heatmap_norm = norm                                        # the same parameters
        local, global_ = peak.local_vectors(frames, maps)
        np.testing.assert_allclose(np.asarray(local), np.asarray(local_peak) * factor[:, :, None],
                                   rtol=1e-4, atol=1e-6)
        assert np.array_equal(np.asarray(global_), np.asarray(global_peak))


def todays_forward(model, inputs):
    """The model's forward pass as it was before these settings existed (peak maps, rows, fused)."""
    frames, heatmaps = inputs["frames"], inputs["heatmaps"]
    b, n = frames.shape[:2]
    f = model.triplet_attention(model.backbone(frames.reshape(b * n, *frames.shape[2:]), False), False)
    h, w = f.shape[1:3]
    maps = match_resolution(heatmaps.reshape(b * n, *heatmaps.shape[2:]), (h, w)).astype(f.dtype)
    local = jnp.einsum("nhwc,nhwk->nkc", f, maps, preferred_element_type=jnp.float32) / (h * w)
    global_ = jnp.mean(f.astype(jnp.float32), axis=(1, 2))
    local, global_ = local.astype(f.dtype), global_.astype(f.dtype)
    w_a = model.gcn.scores(local, global_)
    message = jnp.einsum("nij,njc->nic", w_a[:, :, None] * jnp.asarray(keypoints.ADJACENCY), local,
                         preferred_element_type=jnp.float32)
    local = (message + local.astype(jnp.float32)).astype(local.dtype)
    nodes = nnx.relu(model.gcn.f(jnp.concatenate([local, global_[:, None, :]], axis=1)))
    tokens = model.fusion(nodes).reshape(b, n, -1)
    spatial_logits = model.spatial_head(jnp.mean(tokens.astype(jnp.float32), axis=1))
    embedding = model.temporal(tokens).astype(jnp.float32)
    return model.head(embedding), spatial_logits, embedding


def test_peak_rows_fused_is_bit_identical_to_todays_model():
    config = tiny_config(num_frames=2, heatmap_norm="peak", score_weighting="rows", spatial_head_input="fused")
    model = build_model(config.model, seed=4)
    inputs = batch(config)
    got = model(inputs)
    for have, want in zip((got.logits, got.aux_logits, got.embedding), todays_forward(model, inputs)):
        assert np.array_equal(np.asarray(have), np.asarray(want))


def test_a_run_saved_before_the_settings_is_built_as_it_was_trained(tmp_path):
    """A config.json whose model.dfer lacks the new keys loads as peak, rows, fused (ADDED_KEYS), with
    today's parameter tree; a config made today gets the documented defaults."""
    config = tiny_config(num_frames=2)
    assert (config.model.dfer.heatmap_norm, config.model.dfer.score_weighting,
            config.model.dfer.spatial_head_input) == ("mean", "rows", "fused")
    values = ckpt.config_to_dict(config)
    for key in ADDED_KEYS:
        del values["model"]["dfer"][key]
    (tmp_path / ckpt.CONFIG_FILE).write_text(json.dumps(values))
    old = ckpt.load_run_config(tmp_path)
    model = models.abstract_model(old.model)
    assert model.heatmap_norm == "peak" and model.gcn.weighting == "rows" and model.spatial_head_input == "fused"
    assert ckpt.model_shapes(old) == ckpt.model_shapes(config)
    assert models.abstract_model(config.model).heatmap_norm == "mean"


# --- score_weighting (Eq. 3) ---------------------------------------------------------------------

def test_column_weighting_is_row_weighting_on_the_transpose():
    scores, adj = np.abs(randn(2, 18)), (RNG.random((18, 18)) < 0.3).astype(np.float32)   # not symmetric
    rows_on_transpose = scores[:, :, None] * adj.T                    # NumPy: W_a (18 x 1) (.) A^T
    columns = np.asarray(weighted_adjacency(jnp.asarray(scores), jnp.asarray(adj), "columns"))
    np.testing.assert_array_equal(columns, rows_on_transpose.transpose(0, 2, 1))
    np.testing.assert_array_equal(columns, adj[None] * scores[:, None, :])
    with pytest.raises(ValueError, match="model.dfer.score_weighting"):
        weighted_adjacency(jnp.asarray(scores), jnp.asarray(adj), "cols")


def test_gcn_with_column_weighting_against_numpy():
    c, d = 10, 4
    gcn = KeypointGCN(c, d, weighting="columns", rngs=nnx.Rngs(5))
    gcn.w_learn[...] = jnp.asarray(randn(c, c) / c)
    v_l, v_g = np.abs(randn(2, 18, c)), np.abs(randn(2, c))
    got = np.asarray(gcn(jnp.asarray(v_l), jnp.asarray(v_g)))
    adj = keypoints.ADJACENCY
    w = np.asarray(gcn.w_learn[...])
    expected = []
    for n in range(2):
        w_a = np.maximum(v_l[n] @ w @ v_g[n], 0.0)                           # Eq. (4), unchanged
        message = np.zeros_like(v_l[n])
        for i in range(18):
            for j in range(18):
                message[i] += adj[i, j] * w_a[j] * v_l[n][j]                  # j's score weights j's message
        expected.append(np.concatenate([message + v_l[n], v_g[n][None]]))
    kernel, bias = np.asarray(gcn.f.kernel[...]), np.asarray(gcn.f.bias[...])
    np.testing.assert_allclose(got, np.maximum(np.stack(expected) @ kernel + bias, 0.0), rtol=1e-4, atol=1e-5)
    # The same parameters with rows give another result: the setting changes the message only.
    rows = KeypointGCN(c, d, weighting="rows", rngs=nnx.Rngs(5))
    nnx.update(rows, nnx.state(gcn))
    np.testing.assert_array_equal(np.asarray(rows.scores(jnp.asarray(v_l), jnp.asarray(v_g))),
                                  np.asarray(gcn.scores(jnp.asarray(v_l), jnp.asarray(v_g))))
    assert not np.allclose(np.asarray(rows(jnp.asarray(v_l), jnp.asarray(v_g))), got)


# --- spatial_head_input (Eq. 5, Table 9 models A and B) -------------------------------------------

def np_head(model, per_frame):
    """Eq. (5)'s FC on the mean over frames, NumPy, on the model's weights."""
    video = per_frame.mean(axis=1)
    return video @ np.asarray(model.spatial_head.kernel[...]) + np.asarray(model.spatial_head.bias[...])


def feature_maps(model, inputs):
    frames = inputs["frames"]
    f = model.triplet_attention(model.backbone(frames.reshape(-1, *frames.shape[2:]), False), False)
    return np.asarray(f, np.float64).reshape(*frames.shape[:2], *f.shape[1:])   # (B, N, h, w, C)


def test_model_a_read_as_the_backbones_pooled_map_then_an_fc():
    config = tiny_config(num_frames=2, gcn=False, temporal="none", spatial_head_input="backbone")
    assert variant_of(config.model.dfer) == "A"
    model = build_model(config.model, seed=6)
    assert model.gcn is None and model.fusion is None                 # no f, no region fusion
    inputs = batch(config)
    out = model(inputs)
    pooled = feature_maps(model, inputs).mean(axis=(2, 3))             # g(F) per frame
    np.testing.assert_allclose(np.asarray(out.logits), np_head(model, pooled), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.embedding), pooled.mean(axis=1), rtol=1e-4, atol=1e-5)
    assert out.aux_logits is None


@pytest.mark.parametrize("gcn", [False, True])
def test_models_a_and_b_read_as_the_mean_of_all_feature_vectors_then_an_fc(gcn):
    config = tiny_config(num_frames=2, gcn=gcn, temporal="none", spatial_head_input="nodes", heatmap_norm="mean")
    model = build_model(config.model, seed=7)
    assert model.fusion is None and (model.gcn is not None) == gcn
    inputs = batch(config)
    out = model(inputs)
    f = feature_maps(model, inputs)
    b, n, h, w, c = f.shape
    maps = np.asarray(inputs["heatmaps"], np.float64)
    maps = maps / maps.mean(axis=(2, 3), keepdims=True)                    # heatmap_norm = mean, on F's grid
    local = np.einsum("bnhwc,bnhwk->bnkc", f, maps) / (h * w)             # Eq. (2)
    global_ = f.mean(axis=(2, 3))
    if gcn:
        w_a = np.maximum(np.einsum("bnkc,cd,bnd->bnk", local, np.asarray(model.gcn.w_learn[...]), global_), 0)
        local = np.einsum("bnij,bnjc->bnic", w_a[..., None] * keypoints.ADJACENCY, local) + local
    nodes = np.concatenate([local, global_[:, :, None]], axis=2)              # V (model A) or Eq. (3)'s argument
    if gcn:                                                                    # V^GCN: f with ReLU
        nodes = np.maximum(nodes @ np.asarray(model.gcn.f.kernel[...]) + np.asarray(model.gcn.f.bias[...]), 0)
    np.testing.assert_allclose(np.asarray(out.logits), np_head(model, nodes.mean(axis=2)), rtol=1e-3, atol=1e-4)


def test_with_a_temporal_module_only_the_auxiliary_head_changes():
    fused_config = tiny_config(num_frames=2)
    fused = build_model(fused_config.model, seed=8)
    config = tiny_config(num_frames=2, spatial_head_input="backbone")
    assert variant_of(config.model.dfer) == ""                     # an ablation of its own beside E
    backbone = build_model(config.model, seed=8)
    for name in ("backbone", "triplet_attention", "gcn", "fusion", "temporal", "head"):
        nnx.update(getattr(backbone, name), nnx.state(getattr(fused, name)))
    inputs = batch(config)
    a, b = fused(inputs), backbone(inputs)
    assert np.array_equal(np.asarray(a.logits), np.asarray(b.logits))
    assert np.array_equal(np.asarray(a.embedding), np.asarray(b.embedding))
    pooled = feature_maps(backbone, inputs).mean(axis=(2, 3))
    np.testing.assert_allclose(np.asarray(b.aux_logits), np_head(backbone, pooled), rtol=1e-4, atol=1e-5)


def test_values_are_checked_and_model_b_with_the_backbone_head_is_refused():
    config = tiny_config(heatmap_norm="Mean")
    with pytest.raises(models.ModelConfigError, match="model.dfer.heatmap_norm = 'Mean' is not one of"):
        models.check_config(config.model)
    config = tiny_config(gcn=True, temporal="none", spatial_head_input="backbone")
    with pytest.raises(ValueError, match="leaves the GCN out of every output: use 'nodes'"):
        models.abstract_model(config.model)
