"""A dataset directory: the shards of a data set, its manifest and its ``dataset_info.json``.

Written by :func:`build` (the offline preparation: ``python -m data_prep.build`` and the synthetic
demo set), read by :func:`read_info` and :func:`split_shards`. One module owns the layout::

    <split>-00000.tfrecord (+ .index)   shards of clip records (records.encode_clip), per split
    manifest.jsonl                       one line per input clip: written (shard, record, notes) or
                                         skipped (reason): nothing is lost silently
    dataset_info.json                    classes, counts per split and class, shard files, the clip
                                         preparation (PrepConfig), key-point definition and record versions

Clips are prepared by worker processes; the main process writes the shards in a fixed order, so the
same input gives byte-identical shards whatever the worker count. A shard is complete when its file,
index, ``.manifest.jsonl`` part and ``.plan.json`` exist: an interrupted build run again skips complete
shards.

On a shared machine (``dferjax.jobs``): one build per folder (a lock, ``.dferjax.lock``); SIGTERM or
SIGINT discards the shard in progress and stops (:class:`BuildInterrupted`); a full disk stops it the
same way (an OSError naming the file). The complete shards stay, and the same call resumes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import connection, resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dferjax import jobs, keypoints
from dferjax.data import records
from dferjax.data.clips import ClipError, PrepConfig, PreparedClip, face_thread, prepare_clip

INFO_FILE = "dataset_info.json"
MANIFEST_FILE = "manifest.jsonl"


class DataConfigError(ValueError):
    """The data a config points at is missing or does not fit the config."""


class BuildInterrupted(jobs.Interrupted):
    """A build stopped by SIGTERM or SIGINT: the shard in progress was discarded, the complete shards stay,
    and the same call resumes. ``str()`` is the one line to show (the signal, how many shards are
    complete, what to do); ``.signal`` is the signal's name."""

    def __init__(self, name: str, message: str):
        super().__init__(name)
        self.args = (message,)


class BuildSettingsError(ValueError):
    """The output folder holds shards built with other settings (the message names each that differs)."""


class WorkerError(RuntimeError):
    """A worker process of the build ended while it prepared a clip (the message names the clip and how)."""


# --- what a build is given: the clips of a data set ----------------------------------------------

@dataclass(frozen=True)
class ClipEntry:
    """One labelled sample an adapter lists: a clip (video, frame folder) or a still image.

    ``image`` holds the pixels of an image that is no file (FER2013's 48x48 pixels, written as text in
    its csv); ``source`` then says where they came from (``fer2013.csv#row=12``). ``face_box`` is a face
    box the data set's annotation gives (AffectNet's csv): the landmarks are fitted in it and nothing is
    detected (``clips.prepare_clip``).
    """

    clip_id: str  # unique and stable within the dataset, safe as a file-name fragment
    source: str  # absolute path: a video file, a folder of frame images or an image file (or where `image` came from)
    label: int  # 0-based index in dferjax.labels order
    split: str  # "train"/"test", or "fold1".."fold5": the fold whose TEST set holds the clip
    scene: str = ""  # FERV39k scene, "" elsewhere
    image: Any = field(default=None, compare=False, repr=False)  # uint8 (H, W[, C]) pixels of an image that is no file
    face_box: tuple[float, float, float, float] | None = None     # (x0, y0, x1, y1) in image pixels, from the annotation


@dataclass(frozen=True)
class SkippedEntry:
    clip_id: str  # best identifier available (file name, csv row)
    source: str  # path or "file:line" it came from
    reason: str  # what is wrong, naming the file / row


@dataclass
class Listing:
    dataset: str
    class_names: tuple[str, ...]
    clips: list[ClipEntry] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)

    def label_counts(self) -> dict[str, int]:
        """Number of listed clips per class name (every class present, in class order)."""
        counts = {name: 0 for name in self.class_names}
        for clip in self.clips:
            counts[self.class_names[clip.label]] += 1
        return counts


# --- writing ---------------------------------------------------------------------------------

def prepare_entry(entry: ClipEntry, prep: PrepConfig) -> PreparedClip:
    """The default clip maker: the shared preparation (``clips.prepare_clip``) of the entry's media.

    Args:
      entry: the clip (its ``source``: a video file, a folder of frame images or an image file; or its
        ``image`` pixels), with its ``face_box`` where the data set gives one.
      prep: how clips are prepared.
    Returns:
      The prepared clip (``still`` for an image).
    Raises:
      ClipError: the media cannot be read or has no face (the build lists the clip as skipped).
    """
    source = entry.source if entry.image is None else entry.image
    return prepare_clip(source, prep, face_box=entry.face_box)


def _work(job: tuple[Callable[[ClipEntry, PrepConfig], PreparedClip], ClipEntry, PrepConfig, int]
          ) -> tuple[bytes | None, list[str], str | None, bool]:
    """In a worker: (record bytes, notes, None, still image?) or (None, [], reason the clip was skipped, False)."""
    make_clip, entry, prep, quality = job
    try:
        clip = make_clip(entry, prep)
        data = records.encode_clip(entry.clip_id, entry.label, entry.split, entry.scene, clip, quality)
        return data, list(clip.notes), None, bool(clip.still)
    except ClipError as exc:
        return None, [], exc.reason, False
    except (OSError, ValueError, RuntimeError, cv2.error) as exc:   # a damaged file must not end the build
        return None, [], f"{type(exc).__name__}: {exc}", False


def plan_shards(clips: list[ClipEntry], shard_size: int) -> list[tuple[str, list[ClipEntry]]]:
    """Group clips by split (in listing order) and cut each group into shards of ``shard_size``.

    Args:
      clips: the listed clips.
      shard_size: clips per shard at most.
    Returns:
      [(shard file name ``<split>-<k:05d>.tfrecord``, its clips)], splits in sorted order.
    """
    by_split: dict[str, list[ClipEntry]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    plan = []
    for split in sorted(by_split):
        group = by_split[split]
        for start in range(0, len(group), shard_size):
            plan.append((f"{split}-{start // shard_size:05d}{records.SHARD_SUFFIX}", group[start:start + shard_size]))
    return plan


def _part_path(out: Path, shard: str) -> Path:
    return out / f"{shard}.manifest.jsonl"


def _plan_path(out: Path, shard: str) -> Path:
    return out / f"{shard}.plan.json"


def _fingerprint(source: str) -> list[Any] | None:
    """What a clip's source is on disk now: for a file, the file it resolves to (through links) and its
    size; for a frame folder, the same for its directory and the count and total size of its entries;
    None for a missing path or a source that is no path (the synthetic set)."""
    path = Path(source)
    try:
        if path.is_dir():
            entries = [e for e in path.iterdir() if e.is_file()]
            return [str(path.resolve()), len(entries), sum(e.stat().st_size for e in entries)]
        if path.is_file():
            return [str(path.resolve()), path.stat().st_size]
    except OSError:
        pass
    return None


def _plan_of(clips: list[ClipEntry], settings: dict[str, Any]) -> dict[str, Any]:
    """What a shard is made from: the build settings and its clips, in order, with what each clip's
    source is on disk (a link fixed or a file replaced between two builds changes the plan)."""
    def made_of(c: ClipEntry) -> list[Any]:
        pixels = None if c.image is None else hashlib.sha256(np.ascontiguousarray(c.image).tobytes()).hexdigest()
        box = None if c.face_box is None else [float(v) for v in c.face_box]
        made = [c.clip_id, c.source, c.label, c.split, c.scene, _fingerprint(c.source)]
        return made + [pixels, box] if pixels or box else made      # shards of clips keep their plan
    return {"settings": settings, "clips": [made_of(c) for c in clips]}


def _shard_problem(out: Path, shard: str, clips: list[ClipEntry], settings: dict[str, Any]) -> str | None:
    """Why the shard in ``out`` is not what is now planned for it (None: it is, keep it)."""
    part, plan = _part_path(out, shard), _plan_path(out, shard)
    if not (out / shard).is_file() or not part.is_file():
        return "not written yet"
    try:
        written = json.loads(plan.read_text())
    except (OSError, ValueError):
        written = None
    if written != json.loads(json.dumps(_plan_of(clips, settings))):
        return "its clips, their files or the preparation settings changed since it was written"
    lines = [json.loads(line) for line in part.read_text().splitlines()]
    problem = records.shard_problem(out / shard, sum(line["status"] == "written" for line in lines),
                                    check_crcs=True)
    return f"it {problem}" if problem else None


def _remove_stale(out: Path, plan: list[tuple[str, list[ClipEntry]]]) -> None:
    """Delete shards (and their index, manifest part, plan) of an earlier plan that are not in this one,
    and the temporary files a killed build left (the caller holds the folder's lock: nobody else writes)."""
    planned = {shard for shard, _ in plan}
    for path in sorted(out.glob(f"*-[0-9][0-9][0-9][0-9][0-9]{records.SHARD_SUFFIX}*")):
        end = path.name.index(records.SHARD_SUFFIX) + len(records.SHARD_SUFFIX)
        if path.name[:end] not in planned:
            print(f"removing {path.name}: not part of this build's plan", file=sys.stderr)
            path.unlink()
        elif ".tmp" in path.name[end:]:
            print(f"removing {path.name}: a temporary file left by a build that was killed", file=sys.stderr)
            path.unlink()
    for name in (MANIFEST_FILE, INFO_FILE):
        (out / f"{name}.tmp").unlink(missing_ok=True)


def _discard(out: Path, shard: str) -> None:
    """Remove what exists of a shard that was being written: its manifest part and plan first (so that it
    never counts as complete), then the shard, its index and their temporary files (a signal that lands
    while the writer opens its temporary file raises before the writer exists to remove it)."""
    index = Path(records.index_path(out / shard))
    for path in (_part_path(out, shard), _plan_path(out, shard), out / shard, index,
                 *out.glob(f"{shard}.tmp.*"), *out.glob(f"{index.name}.tmp.*")):
        path.unlink(missing_ok=True)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name ``path`` in a disk error raised inside (a failed ``write`` or ``close`` names no file, and a
    temporary file beside ``path`` means nothing to a user)."""
    try:
        yield
    except OSError as error:
        if jobs.is_disk_error(error) and (not error.filename or os.fspath(error.filename).startswith(str(path))):
            error.filename = str(path)
        raise


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with _writing(path):
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _serve(conn: Connection, beside: bool = False) -> None:
    """A worker process: prepare the clips the main process sends (``_work``), one at a time, until the main
    process ends it or goes away. ``beside``: find the faces in a thread beside the decoding
    (``clips.face_thread``), where the workers leave a core for each such thread.

    SIGINT is ignored: Ctrl-C reaches the whole process group, and the main process stops the build and
    ends the workers, which must not print tracebacks of their own. The worker started with SIGINT blocked
    (:func:`_results`), so a Ctrl-C during its start is pending: ignoring SIGINT discards it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    face_thread(beside)
    while True:
        try:
            task = conn.recv()
            try:
                result: Any = _work(task)
            except Exception as error:      # noqa: BLE001 - a bug in a clip maker: raised in the main process
                result = error
            conn.send(result)
        except (EOFError, OSError):         # the main process ended (a second signal, kill -9)
            return


def _results(tasks: list[Any], workers: int) -> Iterator[tuple[bytes | None, list[str], str | None, bool]]:
    """The results of ``_work`` over ``tasks``, in order, from ``workers`` spawned worker processes.

    Each worker has its own pipe and the main thread reads them itself: no lock is shared with a worker
    and no helper thread runs, so ending the workers at any moment (the build stopped, or closing this
    generator) cannot hang, and a worker that dies (out of memory, a crash in a media library) is an
    error instead of a result that never comes. ``multiprocessing.Pool`` has neither property: its
    ``terminate`` can deadlock on a lock held by a worker it killed (python/cpython#96995), and it waits
    forever for the task of a worker that died.

    Raises:
      WorkerError: a worker process ended while it prepared a clip.
    """
    if workers <= 1:
        yield from map(_work, tasks)
        return
    context = multiprocessing.get_context("spawn")    # never a parent's JAX or dlib state
    # The faces in a thread beside each worker's decoding only where the workers leave a core for it: with
    # a worker per core it competes with the others (2 workers on 2 cores: 4-20% slower; benchmarks/NOTES.md).
    beside = 2 * min(workers, len(tasks)) <= _cores()
    # SIGINT blocked while the workers start: they inherit the mask (see _serve), and a Ctrl-C here waits
    # until the try below ends them. The resource tracker that spawning starts is started first: starting
    # it unblocks SIGINT.
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    processes: list[multiprocessing.process.BaseProcess] = []
    conns: list[Connection] = []
    try:
        try:
            for _ in range(min(workers, len(tasks))):
                conn, child = context.Pipe()
                process = context.Process(target=_serve, args=(child, beside), daemon=True,
                                          name="dferjax-build-worker")
                process.start()
                child.close()
                processes.append(process)
                conns.append(conn)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        yield from _in_order(tasks, processes, conns)
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.join()
        for conn in conns:
            conn.close()


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                            # not Linux
        return os.cpu_count() or 1


def _in_order(tasks: list[Any], processes: list[multiprocessing.process.BaseProcess], conns: list[Connection],
              queued: int = 2) -> Iterator[Any]:
    """Hand ``tasks`` to the workers (``queued`` at a time each, to whichever is free, at most ``4 x`` the
    worker count ahead of the result awaited, which bounds the results held) and yield their results in
    task order."""
    window = 4 * len(conns)
    given: list[deque[int]] = [deque() for _ in conns]     # per worker: the tasks it holds, in order
    results: dict[int, Any] = {}
    sent = 0
    for i in range(len(tasks)):
        while i not in results:
            for w, held in enumerate(given):
                while len(held) < queued and sent < min(len(tasks), i + window):
                    held.append(sent)
                    sent += 1
                    try:
                        conns[w].send(tasks[held[-1]])
                    except OSError:             # a worker that died (its pipe is broken)
                        _worker_died(processes[w], tasks[held[0]])
            ready = set(connection.wait(conns + [p.sentinel for p in processes]))
            for w, (conn, process) in enumerate(zip(conns, processes)):
                try:
                    if conn in ready:
                        results[given[w].popleft()] = conn.recv()
                        continue
                except (EOFError, OSError):     # the worker ended (EOF, or a reset when it left data unread)
                    pass
                if process.sentinel in ready or conn in ready:
                    _worker_died(process, tasks[given[w][0]] if given[w] else None)
        result = results.pop(i)
        if isinstance(result, BaseException):
            raise result
        yield result


def _worker_died(process: multiprocessing.process.BaseProcess, task: Any) -> None:
    """Raise WorkerError for a worker that ended while it held ``task`` (None: none known)."""
    process.join(5)
    code = process.exitcode
    how = f"exit status {code}"
    if code is not None and code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    what = f"clip {task[1].clip_id} ({task[1].source})" if task else "a clip"
    raise WorkerError(f"the worker process preparing {what} ended with {how}: out of memory (the kernel "
                      "ends a process with SIGKILL) or a crash in a media library; the complete shards stay: "
                      "run the same command to resume (with --workers 1 a crash shows where)")


@dataclass
class _State:
    """Where a build is, for the line said when it stops."""
    total: int | None = None        # shards planned
    complete: int = 0               # shards known complete (checked or written)
    current: str | None = None      # the shard being written

    def stopped(self, name: str, out: Path) -> str:
        if self.total is None:
            return f"stopped by {name} before any shard was written to {out}; run the same command to resume"
        discarded = f", the one in progress ({self.current}) was discarded" if self.current else ""
        return (f"stopped by {name}: {self.complete} of {self.total} shards in {out} are complete{discarded}; "
                "run the same command to resume")


def _check(stop: jobs.StopSignals) -> None:
    """Raise Interrupted when a signal came but its exception was swallowed on the way (an ``except
    Exception`` in a clip maker running in this process)."""
    if stop.received:
        raise jobs.Interrupted(stop.received)


def build(listing: Listing, out: str | Path, prep: PrepConfig, *, workers: int = 1, shard_size: int = 256,
          jpeg_quality: int = 95, make_clip: Callable[[ClipEntry, PrepConfig], PreparedClip] = prepare_entry,
          progress: bool = True, option: str = "--out") -> dict[str, Any]:
    """Write the shards, manifest and dataset_info.json for ``listing`` into ``out``.

    The build holds ``out``'s lock (``jobs.FolderLock``) from start to end, and stops on SIGTERM or
    SIGINT (``jobs.StopSignals``; a second signal exits at once). However it stops (a signal, a disk
    error), the shard in progress is discarded and the complete shards stay: the same call resumes,
    and the result is byte-identical to a build that never stopped.

    Args:
      listing: the clips (and the adapter's skipped inputs) of a data set.
      out: the dataset directory (created if missing). A shard already there is kept (resume) when its
        plan (its clips, the settings) is today's and it matches its index and CRCs; otherwise it is
        rebuilt, saying why. Shards of an earlier plan that this one lacks are removed.
      prep: how clips are prepared; workers: worker processes preparing clips (spawned).
      shard_size: clips per shard; jpeg_quality: of the stored frames.
      make_clip: entry, prep -> PreparedClip (default :func:`prepare_entry`; the synthetic set draws).
      progress: a progress bar.
      option: what named ``out`` (``--out``, a config key), for the messages.
    Returns:
      The written ``dataset_info.json`` content.
    Raises:
      jobs.FolderError: ``out`` is a file, not writable, or in use by another build (the message names
        its process).
      BuildInterrupted: SIGTERM or SIGINT (a ``jobs.Interrupted``); its text is the line to show.
      OSError: writing failed; for a disk error (``jobs.is_disk_error``: a full disk, a quota, a file
        size limit...) ``error.filename`` is the file being written (``jobs.disk_error`` says it in one line).
      WorkerError: a worker process ended while it prepared a clip (out of memory, a crash).
      BuildSettingsError: ``out`` holds shards built with other settings (a ValueError naming each).
    """
    out = jobs.check_output_folder(out, option)
    state = _State()
    with jobs.FolderLock(out, option), \
            jobs.StopSignals("discarding the shard in progress", raise_first=True) as stop:
        try:
            try:
                return _build(listing, out, prep, state, stop, workers=workers, shard_size=shard_size,
                              jpeg_quality=jpeg_quality, make_clip=make_clip, progress=progress)
            except BaseException:
                if state.current:
                    _discard(out, state.current)
                raise
        except jobs.Interrupted as interrupted:
            raise BuildInterrupted(interrupted.signal, state.stopped(interrupted.signal, out)) from None


def _build(listing: Listing, out: Path, prep: PrepConfig, state: _State, stop: jobs.StopSignals, *, workers: int,
           shard_size: int, jpeg_quality: int, make_clip: Callable[[ClipEntry, PrepConfig], PreparedClip],
           progress: bool) -> dict[str, Any]:
    """:func:`build` in its locked folder; ``state`` follows it."""
    info_path = out / INFO_FILE
    settings = {"dataset": listing.dataset, "prep": prep.to_dict(), "shard_size": shard_size,
                "jpeg_quality": jpeg_quality}
    if info_path.is_file():
        previous = json.loads(info_path.read_text())
        if {k: previous.get(k) for k in settings} != settings:
            differ = []
            for key, value in settings.items():
                old = previous.get(key)
                if isinstance(value, dict) and isinstance(old, dict):
                    differ += [f"{key}.{k} {old.get(k)!r} -> {v!r}" for k, v in value.items() if old.get(k) != v]
                elif old != value:
                    differ.append(f"{key} {old!r} -> {value!r}")
            hint = ("; a build made before --precropped-detect resumes with --precropped-detect no"
                    if any("precropped_detect" in d for d in differ) else "")
            raise BuildSettingsError(f"{out} holds shards built with other settings ({', '.join(differ)}); use a new "
                                     f"--out directory, or delete the old one to rebuild{hint}")
    plan = plan_shards(listing.clips, shard_size)
    state.total = len(plan)
    _remove_stale(out, plan)
    pending = []
    for shard, clips in plan:
        problem = _shard_problem(out, shard, clips, settings)
        if problem:
            pending.append((shard, clips))
            if problem != "not written yet":
                print(f"rebuilding {shard}: {problem}", file=sys.stderr)
        else:
            state.complete += 1
    tasks = [(make_clip, clip, prep, jpeg_quality) for _, clips in pending for clip in clips]
    if state.complete:
        print(f"resuming: {state.complete} of {len(plan)} shards already complete and checked", file=sys.stderr)
    bar = tqdm(total=len(tasks), unit="sample", desc=f"{listing.dataset} -> {out}", disable=not progress)
    results = _results(tasks, workers)
    try:
        for shard, clips in pending:
            state.current = shard
            _part_path(out, shard).unlink(missing_ok=True)      # an older, different shard: not complete now
            _plan_path(out, shard).unlink(missing_ok=True)
            lines = []
            with _writing(out / shard), records.ShardWriter(out / shard) as writer:
                for clip in clips:
                    data, notes, reason, still = next(results)
                    _check(stop)
                    line = {"clip_id": clip.clip_id, "source": clip.source, "label": clip.label,
                            "split": clip.split, "scene": clip.scene}
                    if data is None:
                        line.update(status="skipped", reason=reason)
                    else:
                        line.update(status="written", shard=shard, record=writer.write(data), notes=notes,
                                    media="image" if still else "clip")
                    lines.append(json.dumps(line))
                    bar.update()
            _check(stop)
            _write_text_atomic(_part_path(out, shard), "".join(line + "\n" for line in lines))
            _write_text_atomic(_plan_path(out, shard), json.dumps(_plan_of(clips, settings)) + "\n")
            state.current = None
            state.complete += 1
    finally:
        results.close()                 # terminates the worker processes, however the loop ended
        bar.close()
    return _finish(out, listing, plan, settings)


def _finish(out: Path, listing: Listing, plan: list[tuple[str, list[ClipEntry]]], settings: dict) -> dict:
    """Merge the shard manifests with the adapter's skipped clips; write manifest.jsonl and the info."""
    lines = []
    for skipped in listing.skipped:
        lines.append({**asdict(skipped), "status": "skipped"})
    shards: dict[str, list[dict]] = {}
    counts: dict[str, Counter] = {}
    for shard, _ in plan:
        part = [json.loads(line) for line in _part_path(out, shard).read_text().splitlines()]
        lines.extend(part)
        written = [p for p in part if p["status"] == "written"]
        shards.setdefault(shard.split("-")[0], []).append({"file": shard, "records": len(written)})
        for p in written:
            counts.setdefault(p["split"], Counter())[listing.class_names[p["label"]]] += 1
    _write_text_atomic(out / MANIFEST_FILE, "".join(json.dumps(line) + "\n" for line in lines))
    skipped = sum(1 for line in lines if line["status"] == "skipped")
    info = {
        **settings,
        "classes": list(listing.class_names),
        "num_classes": len(listing.class_names),
        "splits": {split: {"records": sum(c.values()), "per_class": {n: c.get(n, 0) for n in listing.class_names},
                           "shards": shards.get(split, [])} for split, c in sorted(counts.items())},
        "clips_in": len(lines), "clips_written": len(lines) - skipped, "clips_skipped": skipped,
        "media": dict(Counter(line.get("media", "clip") for line in lines if line["status"] == "written")),
        "keypoint_definition_version": keypoints.DEFINITION_VERSION,
        "clip_record_version": records.CLIP_RECORD_VERSION,
    }
    _write_text_atomic(out / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return info


# --- reading ---------------------------------------------------------------------------------

def read_info(data_dir: str | Path) -> dict[str, Any]:
    """``dataset_info.json`` of a shard directory.

    Raises:
      DataConfigError: no dataset_info.json (the message says how to build the shards), or shards of
        another key-point definition or record version (to rebuild).
    """
    path = Path(data_dir) / INFO_FILE
    if not path.is_file():
        raise DataConfigError(
            f"no {INFO_FILE} in {data_dir} (config key data.dir): build the shards first, e.g. "
            f"python -m data_prep.build --dataset dfew --root /path/to/DFEW --out {data_dir}")
    info = json.loads(path.read_text())
    if info.get("keypoint_definition_version") != keypoints.DEFINITION_VERSION:
        raise DataConfigError(
            f"{path}: shards use key-point definition {info.get('keypoint_definition_version')!r}, this "
            f"dferjax uses {keypoints.DEFINITION_VERSION!r}; rebuild the shards with data_prep")
    if info.get("clip_record_version") != records.CLIP_RECORD_VERSION:
        how = ("delete the folder and run the demo again (it redraws the set)" if info.get("dataset") == "synthetic"
               else "rebuild them into a new folder with python -m data_prep.build")
        raise DataConfigError(
            f"{path}: clip record version {info.get('clip_record_version')!r} is not "
            f"{records.CLIP_RECORD_VERSION} (version 2 stores no heat-maps: each model renders its own); {how}")
    return info


def split_shards(data_dir: str | Path, info: dict[str, Any], splits: Sequence[str], key: str) -> list[str]:
    """The shard files of ``splits`` (named in config key ``key``), checked to exist.

    Args:
      data_dir: the dataset directory; info: its dataset_info.json.
      splits: split names (``train``, ``test``, ``fold<k>``); key: the config key they came from.
    Returns:
      Paths of the splits' non-empty shards.
    Raises:
      DataConfigError: a split the directory does not have, a shard missing, not matching its index
        (truncated, other record count) or with a record whose CRC fails (every shard is read once,
        records.shard_problem), or no records at all.
    """
    files = []
    for split in splits:
        if split not in info["splits"]:
            raise DataConfigError(
                f"{key} names split {split!r}, but {Path(data_dir) / INFO_FILE} has only "
                f"{sorted(info['splits'])}: check the config's fold/splits against the shards")
        for shard in info["splits"][split]["shards"]:
            if shard["records"] == 0:
                continue
            path = Path(data_dir) / shard["file"]
            problem = records.shard_problem(path, shard["records"], check_crcs=True)
            if problem:
                raise DataConfigError(f"shard {path} {problem}: run the data_prep command that built {data_dir} "
                                      "again (it rebuilds damaged shards)")
            files.append(str(path))
    if not files:
        raise DataConfigError(f"{key} = {tuple(splits)} holds no records in {data_dir}")
    return files


def check_classes(info: dict[str, Any], num_classes: int, data_dir: str | Path) -> None:
    """The shards' class count must be the model's (config key model.num_classes).

    Raises:
      DataConfigError: naming both counts and the override that fixes it.
    """
    if info["num_classes"] != num_classes:
        raise DataConfigError(
            f"model.num_classes = {num_classes}, but the shards in {data_dir} have {info['num_classes']} "
            f"classes ({', '.join(info['classes'])}): set --config.model.num_classes={info['num_classes']} "
            "or point data.dir at the right shards")


def check_media(info: dict[str, Any], num_frames: int, data_dir: str | Path, model_key: str = "model") -> None:
    """A still-image model (``num_frames`` 1) needs shards of still images, a clip model shards of clips.

    Shards of both kinds (a folder of clips and photos) suit either. Shards written before the build
    counted them (no ``media`` in dataset_info.json) hold clips.

    Args:
      info: the shards' dataset_info.json.
      num_frames: frames per sample the model takes.
      data_dir: the shard directory (for the message).
      model_key: the config key of the model's frame count (for the message).
    Raises:
      DataConfigError: the model and the shards differ (the message names both and what to do).
    """
    media = info.get("media") or {"clip": info.get("clips_written", 0)}
    images, clips = int(media.get("image", 0)), int(media.get("clip", 0))
    if num_frames == 1 and clips and not images:
        raise DataConfigError(
            f"{model_key} = 1 frame (a still-image model), but the shards in {data_dir} hold {clips} clips and no "
            "still image: point data.dir at image shards (data_prep.build of an image data set) or train a clip "
            "config")
    if num_frames > 1 and images and not clips:
        raise DataConfigError(
            f"{model_key} = {num_frames} frames (a clip model), but the shards in {data_dir} hold {images} still "
            "images and no clip: use a still-image config (e.g. configs/rafdb.py, one frame per sample) or point "
            "data.dir at clip shards")
