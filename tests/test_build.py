"""data_prep.build on a folder of real videos with bad files mixed in: manifest, determinism, resume; and the
build on a shared machine (the synthetic set through its command): stopped by signals, killed, run twice into
one folder, given a folder it cannot write, stopped by a file size limit."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dferjax import jobs
from dferjax.data import clips
from dferjax.data import dataset as B
from data_prep.adapters import list_clips
from dferjax.data import records, synthetic
from dferjax.data.clips import PrepConfig
from dferjax.data.faces import FaceSource

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


def test_the_build_names_every_skipped_input_and_its_reason_on_the_console(mixed_folder, tmp_path, capsys):
    """A user's report: the summary said "1 skipped (reasons in .../manifest.jsonl)" and nothing more. Each
    skipped input is named with its reason below the summary (the manifest's lines, in its order); a build whose
    clips all fell in train (two clips, the folder adapter's hash split) says that it has no test split."""
    from data_prep import build as command
    out = tmp_path / "out"
    code = command.main(["--dataset", "folder", "--root", str(mixed_folder), "--out", str(out), "--workers", "1",
                         "--max-frames", "4", "--min-frames", "4", "--image-size", "32"])
    printed = capsys.readouterr().out
    skipped = [line for line in manifest(out) if line["status"] == "skipped"]
    assert code == 0 and len(skipped) == 4
    listed = [line for line in printed.splitlines() if line.startswith("  skipped: ")]
    assert len(listed) == 4
    for line, entry in zip(listed, skipped):
        assert entry["reason"] in line and Path(entry["source"]).name in line
    assert any("c.mp4: no face found" in line for line in listed)
    assert "  train: 2 clips in 1 shard" in printed
    assert "  no test split: training evaluates on one (data.test_splits): the folder adapter" in printed


def test_fast_detection_options_are_recorded_and_used(testdata, tmp_path):
    """--fast-detect 320 --detect-every 2 reach the PrepConfig the build records (dataset_info.json's prep, which
    predict reads back), and its clip is what prepare_clip gives with those settings (frames detected and, in
    between, TRACKED)."""
    from data_prep import build as command
    root = tmp_path / "clips"
    (root / "happy").mkdir(parents=True)
    os.symlink(testdata / "videos" / "single_face.mp4", root / "happy" / "a.mp4")
    out = tmp_path / "out"
    assert command.main(["--dataset", "folder", "--root", str(root), "--out", str(out), "--workers", "1",
                         "--max-frames", "8", "--min-frames", "8", "--image-size", "32", "--fast-detect", "320",
                         "--detect-every", "2"]) == 0
    prep = PrepConfig.from_dict(B.read_info(out)["prep"])
    assert prep == PrepConfig(image_size=32, max_frames=8, min_frames=8, fast_detect=320, detect_every=2)
    expected = clips.prepare_clip(testdata / "videos" / "single_face.mp4", prep)
    assert set(expected.sources.tolist()) == {FaceSource.DETECTED, FaceSource.TRACKED}
    source = records.ShardedDataSource(sorted(out.glob("*.tfrecord")))
    written = records.decode_example(source[0])
    np.testing.assert_array_equal(written["sources"], expected.sources)
    np.testing.assert_allclose(written["keypoints"], expected.keypoints, atol=1e-3)


# --- the build on a shared machine: real processes of python -m data_prep.synthetic ------------------------

REPO = Path(__file__).resolve().parents[1]
# 64 clips of 16 frames of 112x112 in 32 shards: a signal sent when the first shard is complete lands
# mid-build (the other 31 take about a second on two workers).
LONG = ["--train", "60", "--test", "4", "--shard-size", "2", "--workers", "2"]
LONG_SHARDS = 32
# 5 clips of 4 frames of 32x32: test-00000 holds one clip, train-00000 and train-00001 two each.
TINY = ["--train", "4", "--test", "1", "--shard-size", "2", "--workers", "1", "--max-frames", "4",
        "--min-frames", "4", "--image-size", "32"]
TINY_PREP = PrepConfig(image_size=32, max_frames=4, min_frames=4)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """The LONG set built without a stop."""
    out = tmp_path_factory.mktemp("long") / "out"
    synthetic.make_demo_set(out, num_train=60, num_test=4, prep=PrepConfig(max_frames=16), workers=2,
                            shard_size=2, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """The TINY set built without a stop."""
    out = tmp_path_factory.mktemp("tiny") / "out"
    synthetic.make_demo_set(out, num_train=4, num_test=1, prep=TINY_PREP, shard_size=2, progress=False)
    return out


def start_build(out: Path, args: list[str], **kwargs) -> subprocess.Popen:
    """``python -m data_prep.synthetic --out OUT ARGS`` in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "data_prep.synthetic", "--out", str(out), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def run_build(out: Path, args: list[str], **kwargs) -> tuple[int, str]:
    """Run the build command to its end: (exit status, stderr)."""
    build = start_build(out, args, **kwargs)
    _, err = build.communicate(timeout=120)
    return build.returncode, err


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.002)


def live_processes(group: int) -> list[int]:
    """Processes of process group ``group`` that still run (not zombies waiting for their parent)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, _, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
            if int(pgrp) == group and state != "Z":
                pids.append(int(entry.name))
    return pids


def first_shard_complete(out: Path) -> bool:
    return any(out.glob("*.plan.json"))             # the plan is written last: the shard is complete


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")


@needs_proc
@pytest.mark.parametrize("how", ["SIGTERM to the build", "SIGINT to its process group (Ctrl-C)"])
def test_a_signal_discards_the_shard_in_progress_exits_75_and_the_same_command_resumes(how, long_reference,
                                                                                      tmp_path):
    out = tmp_path / "out"
    build = start_build(out, LONG)
    wait_for(lambda: first_shard_complete(out), "the first complete shard")
    if how.startswith("SIGTERM"):
        name = "SIGTERM"
        build.send_signal(signal.SIGTERM)               # while the build waits for a worker's result
    else:
        name = "SIGINT"
        os.killpg(build.pid, signal.SIGINT)             # the build and its workers, as a terminal does
    _, err = build.communicate(timeout=60)
    assert build.returncode == jobs.EXIT_REQUEUE == 75, err
    line = re.search(rf"^stopped by {name}: (\d+) of {LONG_SHARDS} shards in {re.escape(str(out))} are complete"
                     r"(, the one in progress \((\S+)\) was discarded)?; run the same command to resume$", err, re.M)
    assert line, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err     # workers ignore SIGINT
    wait_for(lambda: not live_processes(build.pid), "the workers to end", timeout=10)
    # Complete shards only: each with its index, manifest part and plan; nothing of the discarded one.
    names = set(os.listdir(out))
    shards = {n for n in names if n.endswith(".tfrecord")}
    assert 0 < len(shards) == int(line[1]) < LONG_SHARDS
    assert line[3] is None or line[3] not in shards
    assert names == {jobs.LOCK_FILE} | {s + x for s in shards for x in ("", ".index", ".manifest.jsonl", ".plan.json")}
    assert (out / jobs.LOCK_FILE).read_text() == ""      # released

    code, err = run_build(out, LONG)
    assert code == 0 and f"resuming: {len(shards)} of {LONG_SHARDS} shards already complete and checked" in err
    assert folder_files(out) == folder_files(long_reference)


def render_and_interrupt(entry, prep):
    """The synthetic clip maker; at clip train_00003 it sends SIGINT to the build's main process (its parent
    when it runs in a worker, itself otherwise), as Ctrl-C would."""
    if entry.clip_id == "train_00003":
        os.kill(os.getppid() if multiprocessing.parent_process() else os.getpid(), signal.SIGINT)
    return synthetic.render_entry(entry, prep)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_signal_stops_the_build_function_with_its_workers_ended(workers, tiny_reference, tmp_path):
    """dataset.build in this process (as the demo set is built by training): BuildInterrupted with the line
    to show, no worker left, the signal handlers and the lock given back; the same call resumes."""
    out = tmp_path / "out"
    listing = synthetic.synthetic_listing(4, 1)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(B.BuildInterrupted) as stop:
        B.build(listing, out, TINY_PREP, workers=workers, shard_size=2, make_clip=render_and_interrupt,
                progress=False)
    assert isinstance(stop.value, jobs.Interrupted) and stop.value.signal == "SIGINT"
    # The shards in order: test-00000, train-00000, train-00001 (train_00002, train_00003). In this process the
    # signal comes while train-00001 is written; from a worker, which may run ahead, while any of them is.
    plan = ["test-00000.tfrecord", "train-00000.tfrecord", "train-00001.tfrecord"]
    line = re.fullmatch(rf"stopped by SIGINT: (\d) of 3 shards in {re.escape(str(out))} are complete, the one in "
                        r"progress \((\S+)\) was discarded; run the same command to resume", str(stop.value))
    assert line and line[2] == plan[int(line[1])] and (workers == 2 or line[1] == "2"), str(stop.value)
    assert multiprocessing.active_children() == []
    assert signal.getsignal(signal.SIGINT) is before and (out / jobs.LOCK_FILE).read_text() == ""
    complete = {f"{s}{x}" for s in plan[:int(line[1])] for x in ("", ".index", ".manifest.jsonl", ".plan.json")}
    assert set(os.listdir(out)) == complete | {jobs.LOCK_FILE}
    B.build(listing, out, TINY_PREP, workers=workers, shard_size=2, make_clip=synthetic.render_entry, progress=False)
    assert folder_files(out) == folder_files(tiny_reference)


def render_or_die(entry, prep):
    """The synthetic clip maker, whose worker process is killed (as by the out-of-memory killer) at
    train_00002."""
    if entry.clip_id == "train_00002":
        os.kill(os.getpid(), signal.SIGKILL)
    return synthetic.render_entry(entry, prep)


def test_a_worker_that_dies_stops_the_build_naming_its_clip(tiny_reference, tmp_path):
    out = tmp_path / "out"
    listing = synthetic.synthetic_listing(4, 1)
    with pytest.raises(B.WorkerError, match=r"the worker process preparing clip train_00002 \(synthetic:\S+\) "
                                            r"ended with signal SIGKILL: out of memory"):
        B.build(listing, out, TINY_PREP, workers=2, shard_size=2, make_clip=render_or_die, progress=False)
    assert multiprocessing.active_children() == [] and (out / jobs.LOCK_FILE).read_text() == ""
    assert not [n for n in os.listdir(out) if n.startswith("train-00001")]
    B.build(listing, out, TINY_PREP, workers=2, shard_size=2, make_clip=synthetic.render_entry, progress=False)
    assert folder_files(out) == folder_files(tiny_reference)


@needs_proc
def test_a_killed_build_leaves_no_worker_and_the_next_one_takes_over_its_lock(long_reference, tmp_path):
    out = tmp_path / "out"
    build = start_build(out, LONG)
    wait_for(lambda: first_shard_complete(out), "the first complete shard")
    build.kill()                                        # SIGKILL: no cleanup at all in the build
    build.communicate(timeout=60)
    wait_for(lambda: not live_processes(build.pid), "the workers to end with their parent", timeout=10)
    assert json.loads((out / jobs.LOCK_FILE).read_text())["pid"] == build.pid
    leftovers = [n for n in os.listdir(out) if ".tmp" in n]

    code, err = run_build(out, LONG)
    assert code == 0, err
    assert f"taking over the lock left by process {build.pid}" in err
    for name in leftovers:
        assert f"removing {name}: a temporary file left by a build that was killed" in err
    assert folder_files(out) == folder_files(long_reference)


def test_a_second_build_into_the_same_folder_is_refused_naming_the_first(long_reference, tmp_path):
    out = tmp_path / "out"
    first = start_build(out, LONG)
    try:
        lock = out / jobs.LOCK_FILE
        wait_for(lambda: lock.is_file() and str(first.pid) in lock.read_text(), "the first build's lock")
        first.send_signal(signal.SIGSTOP)               # it cannot end while the second one tries
        code, err = run_build(out, LONG)
        first.send_signal(signal.SIGCONT)
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"error: --out {out} is in use by process {first.pid} on ")
        assert f"-m data_prep.synthetic --out {out} " in err and "wait for it to end, or use another folder" in err
        _, first_err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, first_err
    assert folder_files(out) == folder_files(long_reference)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this user cannot write: chmod 555, or for root (whom permissions do not stop) immutable
    (chattr +i); skipped where neither works."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root, and chattr +i is not available to make a folder root cannot write")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_an_out_that_cannot_be_written_is_refused_in_one_line_before_the_listing(case, tmp_path, capsys, request):
    from data_prep import build as command
    from data_prep import synthetic as synthetic_command
    (tmp_path / "file").write_text("not a folder")
    out, said = {"a file": (tmp_path / "file", "is a file, not a folder: name a folder"),
                 "under a file": (tmp_path / "file" / "shards", "cannot be created (Not a directory): name a folder"),
                 "read-only": (None, "is not writable by this user: name a folder you can write to")}[case]
    if out is None:
        out = request.getfixturevalue("read_only_folder")
    # The root does not exist: a listing before the check would fail on it.
    code = command.main(["--dataset", "folder", "--root", str(tmp_path / "no-such-root"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: --out {out} ") and said in err and err.count("\n") == 1
    code = synthetic_command.main(["--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: --out {out} ") and said in err and err.count("\n") == 1
    assert not (tmp_path / "no-such-root").exists() and sorted(p.name for p in tmp_path.iterdir()) == \
        sorted({"file"} | ({"read-only"} if case == "read-only" else set()))


def test_a_file_size_limit_stops_the_build_in_one_line_and_the_same_command_resumes(tiny_reference, tmp_path):
    """A full disk, for real: a file size limit (ulimit -f) between the one-clip shard and the two-clip ones
    fails the write of train-00000.tfrecord with EFBIG (Python ignores SIGXFSZ)."""
    sizes = {name: len(data) for name, data in folder_files(tiny_reference).items()}
    limit = (sizes["test-00000.tfrecord"] + sizes["train-00000.tfrecord"]) // 2
    assert max(n for name, n in sizes.items() if not name.startswith("train-0000")) < limit
    assert limit < min(sizes["train-00000.tfrecord"], sizes["train-00001.tfrecord"])
    out = tmp_path / "out"
    code, err = run_build(out, TINY, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert code == 1 and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith(f"error: writing {out / 'train-00000.tfrecord'} failed: File too large; ")
    assert last.endswith("GiB free there (the file size limit (ulimit -f) is too low); the complete shards stay: "
                         "run the same command to resume")
    assert sorted(os.listdir(out)) == sorted([jobs.LOCK_FILE] + [f"test-00000.tfrecord{x}" for x in
                                                                 ("", ".index", ".manifest.jsonl", ".plan.json")])
    code, err = run_build(out, TINY)
    assert code == 0 and "resuming: 1 of 3 shards already complete and checked" in err, err
    assert folder_files(out) == folder_files(tiny_reference)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_disk_error_stops_the_build_function_naming_the_shard(workers, tiny_reference, tmp_path):
    """dataset.build in this process under a file size limit: the OSError names the shard being written, the
    shard is discarded, no worker is left, the lock is released; the same call resumes."""
    sizes = {name: len(data) for name, data in folder_files(tiny_reference).items()}
    limit = (sizes["test-00000.tfrecord"] + sizes["train-00000.tfrecord"]) // 2
    out = tmp_path / "out"
    listing = synthetic.synthetic_listing(4, 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as error:
            B.build(listing, out, TINY_PREP, workers=workers, shard_size=2, make_clip=synthetic.render_entry,
                    progress=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert jobs.is_disk_error(error.value) and error.value.filename == str(out / "train-00000.tfrecord")
    assert multiprocessing.active_children() == [] and (out / jobs.LOCK_FILE).read_text() == ""
    assert sorted(os.listdir(out)) == sorted([jobs.LOCK_FILE] + [f"test-00000.tfrecord{x}" for x in
                                                                 ("", ".index", ".manifest.jsonl", ".plan.json")])
    B.build(listing, out, TINY_PREP, workers=workers, shard_size=2, make_clip=synthetic.render_entry, progress=False)
    assert folder_files(out) == folder_files(tiny_reference)
