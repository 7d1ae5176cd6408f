"""data_prep.build on a folder of real videos with bad files mixed in: manifest, determinism, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dferjax.data import dataset as B
from data_prep.adapters import list_clips
from dferjax.data import records
from dferjax.data.clips import PrepConfig

PREP = PrepConfig(image_size=32, max_frames=4, min_frames=4)


@pytest.fixture
def mixed_folder(testdata, tmp_path):
    """ROOT/<label>/<clip>: two good clips, one without a face, a corrupt video, a text file,
    and a folder whose name is no expression."""
    root = tmp_path / "clips"
    videos = testdata / "videos"
    for label, name, target in [("happy", "a.mp4", "single_face.mp4"), ("happy", "b.mp4", "fer_test.mp4"),
                                ("sad", "c.mp4", "no_face.mp4"), ("bored", "d.mp4", "single_face.mp4")]:
        (root / label).mkdir(parents=True, exist_ok=True)
        os.symlink(videos / target, root / label / name)
    (root / "angry").mkdir()
    (root / "angry" / "broken.mp4").write_bytes(b"\x00\x01" * 1000)
    (root / "angry" / "readme.txt").write_text("not a clip")
    return root


def manifest(out):
    return [json.loads(line) for line in (out / B.MANIFEST_FILE).read_text().splitlines()]


def test_manifest_accounts_for_every_clip(mixed_folder, tmp_path):
    listing = list_clips("folder", mixed_folder, test_fraction=0.0)
    info = B.build(listing, tmp_path / "out", PREP, workers=1, shard_size=2, progress=False)
    lines = manifest(tmp_path / "out")
    assert len(lines) == 6 == info["clips_in"]            # every file under the root, once
    by_name = {os.path.basename(line["source"]): line for line in lines}
    assert {n for n, line in by_name.items() if line["status"] == "written"} == {"a.mp4", "b.mp4"}
    assert "no face" in by_name["c.mp4"]["reason"]
    assert by_name["broken.mp4"]["status"] == by_name["readme.txt"]["status"] == "skipped"
    assert "bored" in by_name["d.mp4"]["reason"]          # a label folder that is no expression
    assert all(line.get("reason") for line in lines if line["status"] == "skipped")
    # The written lines point at the records holding them.
    source = records.ShardedDataSource(tmp_path / "out")
    assert len(source) == 2 == info["clips_written"]
    for line in lines:
        if line["status"] == "written":
            data = records.ShardReader(tmp_path / "out" / line["shard"]).read_record(line["record"])
            rec = records.decode_clip(data)
            assert rec["clip_id"] == line["clip_id"] and rec["label"] == 0 and rec["frames"].shape == (4, 32, 32, 3)
    assert info["splits"]["train"]["per_class"]["happy"] == 2 and info["num_classes"] == 7
    assert info["keypoint_definition_version"] and info["clip_record_version"] == records.CLIP_RECORD_VERSION == 2
    assert "heatmap_resolution" not in info and "heatmap_size" not in info["prep"]


def test_same_bytes_whatever_the_worker_count_and_resume(mixed_folder, tmp_path):
    listing = list_clips("folder", mixed_folder, test_fraction=0.0)
    one, two = tmp_path / "one", tmp_path / "two"
    B.build(listing, one, PREP, workers=1, shard_size=1, progress=False)
    B.build(listing, two, PREP, workers=2, shard_size=1, progress=False)
    shards = sorted(p.name for p in one.glob("*.tfrecord"))
    assert len(shards) == 4                          # shard_size 1: one shard per listed clip
    for name in shards:
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert (one / B.MANIFEST_FILE).read_text() == (two / B.MANIFEST_FILE).read_text()

    # An interrupted build: one shard never finished. A rerun redoes only that one.
    unfinished = one / shards[0]
    expected = unfinished.read_bytes()
    os.remove(B._part_path(one, shards[0]))
    unfinished.write_bytes(b"half a shard")
    before = {name: (one / name).stat().st_mtime_ns for name in shards[1:]}
    B.build(listing, one, PREP, workers=1, shard_size=1, progress=False)
    assert unfinished.read_bytes() == expected
    assert {name: (one / name).stat().st_mtime_ns for name in shards[1:]} == before


def test_other_settings_in_the_same_folder_are_refused(mixed_folder, tmp_path):
    listing = list_clips("folder", mixed_folder, test_fraction=0.0)
    B.build(listing, tmp_path / "out", PREP, workers=1, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        B.build(listing, tmp_path / "out", PrepConfig(image_size=48, max_frames=4, min_frames=4),
                workers=1, progress=False)


CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"


@pytest.mark.skipif(not (CASES / "unicode_ids").is_dir(), reason=f"{CASES / 'unicode_ids'} not found (shared/cases)")
def test_build_keeps_every_file_named_in_any_script(tmp_path):
    """cases/unicode_ids: 笑顔.mp4 and 喜び.mp4, 'a b.mp4' and a_b.mp4 are four clips, all written."""
    listing = list_clips("folder", CASES / "unicode_ids" / "root")
    info = B.build(listing, tmp_path / "out", PrepConfig(image_size=32, max_frames=4, min_frames=4), progress=False)
    assert info["clips_written"] == 4 and info["clips_skipped"] == 0
    written = {line["clip_id"] for line in manifest(tmp_path / "out") if line["status"] == "written"}
    assert written == {"happy/笑顔", "happy/喜び", "sad/a%20b", "sad/a_b"}


def test_a_resumed_build_rebuilds_a_shard_whose_clips_changed(mixed_folder, tmp_path, capsys):
    """cases/folder_layout, generated: between two builds the user fixes a broken link (same path, now a
    video). The finished shard planned to hold it is rebuilt (saying why) and the manifest accounts for
    every input."""
    out = tmp_path / "out"
    os.symlink(mixed_folder / "happy" / "nowhere.mp4", mixed_folder / "happy" / "e.mp4")   # a broken link
    B.build(list_clips("folder", mixed_folder, test_fraction=0.0), out, PREP, progress=False)
    assert any(line["clip_id"] == "happy/e" and line["status"] == "skipped" for line in manifest(out))
    os.remove(mixed_folder / "happy" / "e.mp4")
    os.symlink(mixed_folder / "happy" / "a.mp4", mixed_folder / "happy" / "e.mp4")         # the link fixed
    listing = list_clips("folder", mixed_folder, test_fraction=0.0)
    capsys.readouterr()
    info = B.build(listing, out, PREP, progress=False)
    assert "rebuilding train-00000.tfrecord: its clips, their files or the preparation settings changed" in \
        capsys.readouterr().err
    lines = manifest(out)
    assert {line["clip_id"] for line in lines} >= {c.clip_id for c in listing.clips}
    assert any(line["clip_id"] == "happy/e" and line["status"] == "written" for line in lines)
    assert info["clips_written"] == 3 and len(records.ShardedDataSource(out)) == 3


def test_a_resumed_build_rebuilds_a_truncated_shard(mixed_folder, tmp_path, capsys):
    """cases/truncated_shard, generated: a shard cut to 60% (an interrupted copy) while its index stays
    whole. The shard check names it; the rerun rebuilds it to the same bytes."""
    out = tmp_path / "out"
    listing = list_clips("folder", mixed_folder, test_fraction=0.0)
    B.build(listing, out, PREP, progress=False)
    shard = out / "train-00000.tfrecord"
    whole = shard.read_bytes()
    shard.write_bytes(whole[: int(len(whole) * 0.6)])
    assert "is truncated" in records.shard_problem(shard)
    capsys.readouterr()
    B.build(listing, out, PREP, progress=False)
    assert "rebuilding train-00000.tfrecord: it is truncated" in capsys.readouterr().err
    assert shard.read_bytes() == whole and records.shard_problem(shard, 2, check_crcs=True) is None


def test_a_build_that_writes_nothing_exits_1_with_the_first_reasons(testdata, tmp_path, capsys):
    from data_prep import build as command
    root = tmp_path / "clips"
    (root / "sad").mkdir(parents=True)
    os.symlink(testdata / "videos" / "no_face.mp4", root / "sad" / "c.mp4")
    (root / "sad" / "broken.mp4").write_bytes(b"\x00" * 100)
    code = command.main(["--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "out"), "--workers", "1",
                         "--max-frames", "4", "--min-frames", "4", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 1 and "no clip was written" in err and "no face found" in err
