"""Dataset adapters: one per layout, each listing a dataset's labelled clips as its authors ship it.

``list_clips(dataset, root, **options)`` returns a :class:`Listing`: every candidate clip the adapter
sees (a split-file row, a video file, a frame folder) ends up either in ``clips`` (a :class:`ClipEntry`
with its absolute source path, its 0-based label in :mod:`dferjax.labels` order and its split) or in
``skipped`` (a :class:`SkippedEntry` whose reason names the file or row and what is wrong). One bad clip
never stops a run; only a root that does not exist or lacks the layout's structure raises
(``FileNotFoundError`` / ``ValueError`` naming the path and the layout expected).

Shared conventions of all adapters:

* Labels: class names are matched case-insensitively, ignoring everything but letters, and accept
  synonyms (``happiness`` -> happy, ``anger`` -> angry, ``sadness`` -> sad, ``surprised`` -> surprise,
  ``disgusted`` -> disgust, ``fearful`` -> fear, ``neutrality`` -> neutral, ``contemptuous`` -> contempt,
  ``anxious`` -> anxiety, ``helpless`` -> helplessness, ``disappointed`` -> disappointment, ...). Class
  indices follow ``dferjax.labels.BASIC_CLASSES`` (7 classes), ``CONTEMPT_CLASSES`` (8, option
  ``num_classes=8``) or ``MAFW_CLASSES`` (11, option ``num_classes=11``); a class outside the first
  ``num_classes`` is skipped with the reason.
* Split / label files: text, UTF-8 (a BOM is fine); a line holding a comma is read as CSV, else as
  tab- or whitespace-separated fields; blank lines and lines starting with ``#`` are ignored; the first
  row is a header (and dropped) when it has no number, no class name and a header word such as
  ``video_name``, ``path`` or ``label``.
* Ids: numeric clip names match whether zero-padded or not (``1`` == ``00001``); folder and file names
  match case-insensitively.
* Media: a video is a non-empty file with an extension in ``VIDEO_EXTENSIONS``; a frame folder is a
  directory holding at least one file with an extension in ``IMAGE_EXTENSIONS``; a still image (a
  sample of one frame) is a non-empty file with an extension in ``IMAGE_EXTENSIONS``, or pixels an
  adapter read from a table (FER2013's csv: ``ClipEntry.image``, its ``source`` then ``<csv>#row=<line>``).
  Names starting with ``.`` (``.DS_Store``, ``._x.mp4``) are not candidates and are ignored.
* Hash split (folder and csv adapters, when no split is given): a clip is in ``test`` iff
  ``int.from_bytes(sha256(clip_id.encode("utf-8")).digest()[:8], "big") / 2**64 < test_fraction``
  (:func:`hash_split`), so the split of a clip depends on its id only, never on what else is listed.
* Output: ``clips`` sorted by ``clip_id``; ``skipped`` sorted by ``(clip_id, source, reason)``.
"""

from __future__ import annotations

import csv as _csv
import hashlib
import itertools
import math
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from dferjax.data.clips import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # the media prepare_clip reads
from dferjax.data.dataset import ClipEntry, Listing, SkippedEntry  # what an adapter returns
from dferjax.labels import BASIC_CLASSES, MAFW_CLASSES
from dferjax.labels import class_names as _class_names

__all__ = [
    "ADAPTERS", "ClipEntry", "IMAGE_EXTENSIONS", "Listing", "SkippedEntry", "VIDEO_EXTENSIONS",
    "afew", "affectnet", "affectnet_layout", "csv_labels", "dfew", "ferplus", "ferv39k", "folder", "hash_split",
    "list_clips", "mafw", "parse_label", "rafdb",
]


# ------------------------------------------------------------------------------------------------
# Public records
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Class names and labels
# ------------------------------------------------------------------------------------------------

_SYNONYMS = {
    "happy": ("happy", "happiness", "happily", "joy", "joyful"),
    "sad": ("sad", "sadness", "sadly"),
    "neutral": ("neutral", "neutrality", "neutrals"),
    "angry": ("angry", "anger", "angrily"),
    "surprise": ("surprise", "surprised", "surprising"),
    "disgust": ("disgust", "disgusted", "disgusting"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "contempt": ("contempt", "contemptuous"),
    "anxiety": ("anxiety", "anxious"),
    "helplessness": ("helplessness", "helpless"),
    "disappointment": ("disappointment", "disappointed"),
}
_CANONICAL = {synonym: name for name, synonyms in _SYNONYMS.items() for synonym in synonyms}
assert set(_SYNONYMS) == set(MAFW_CLASSES)

# Integer label codes (1-based) of the official split files.
DFEW_CODES = BASIC_CLASSES  # DFEW: 1 happy, 2 sad, 3 neutral, 4 angry, 5 surprise, 6 disgust, 7 fear
MAFW_CODES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
              "contempt", "anxiety", "helplessness", "disappointment")  # MAFW's own order 1..11

_HEADER_WORDS = {
    "videoname", "video", "videos", "name", "names", "label", "labels", "path", "paths", "file", "filename",
    "filepath", "clip", "clipname", "clipid", "clippath", "id", "split", "subset", "fold", "set", "emotion",
    "class", "classname", "category", "expression", "target",
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def _canonical(name: str) -> str | None:
    return _CANONICAL.get(_norm(name))


class _Bad(Exception):
    """A problem with one row or clip: becomes a SkippedEntry's reason."""


def parse_label(text: str, num_classes: int = 7, codes: tuple[str, ...] | None = None,
                zero_based: bool = False) -> int:
    """One label field -> 0-based index in dferjax.labels order, or ValueError saying why not.

    ``text`` is a class name (synonyms and any case accepted) or an integer: a 1-based code into
    ``codes`` (e.g. DFEW_CODES, MAFW_CODES) or, with ``zero_based``, directly a dferjax index.
    """
    names = _class_names(num_classes)
    raw = text.strip()
    if re.fullmatch(r"[+-]?\d+", raw):
        number = int(raw)
        if codes is not None:
            if not 1 <= number <= len(codes):
                raise ValueError(f"label {raw!r} is outside the codes 1..{len(codes)}")
            canonical = codes[number - 1]
        elif zero_based:
            if not 0 <= number < num_classes:
                raise ValueError(f"label index {raw!r} is outside 0..{num_classes - 1}")
            return number
        else:
            raise ValueError(f"label {raw!r} is a number where a class name was expected")
    else:
        canonical = _canonical(raw)
        if canonical is None:
            raise ValueError(f"label {raw!r} is not a known class name (known: {', '.join(MAFW_CLASSES)})")
    index = MAFW_CLASSES.index(canonical)
    if index >= num_classes:
        raise ValueError(f"class {canonical!r} (label {raw!r}) is not one of the {num_classes} classes "
                         f"({', '.join(names)})")
    return index


def _label(text: str, num_classes: int, **kwargs) -> int:
    try:
        return parse_label(text, num_classes, **kwargs)
    except ValueError as error:
        raise _Bad(str(error)) from None


def hash_split(clip_id: str, test_fraction: float) -> str:
    """"test" iff the first 8 bytes of sha256(clip_id) as a fraction of 2**64 are < test_fraction."""
    value = int.from_bytes(hashlib.sha256(clip_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "test" if value < test_fraction else "train"


def _check_fraction(test_fraction: float) -> float:
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction}")
    return float(test_fraction)


# ------------------------------------------------------------------------------------------------
# Paths and media
# ------------------------------------------------------------------------------------------------


def _check_root(root: str | Path, dataset: str, expected: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{dataset}: root {path} {what}; expected {expected}")
    return path.resolve()


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _children(directory: Path) -> list[Path]:
    """Non-hidden entries of a directory, sorted by name (empty when unreadable)."""
    try:
        return sorted((p for p in directory.iterdir() if not _hidden(p)), key=lambda p: p.name)
    except OSError:
        return []


def _ci_child(parent: Path | None, *names: str) -> Path | None:
    """The first of ``names`` that exists under parent, exact spelling first, then any case."""
    if parent is None or not parent.is_dir():
        return None
    for name in names:
        if (parent / name).exists():
            return parent / name
    lowered = {n.lower() for n in names}
    for child in sorted(parent.iterdir(), key=lambda p: p.name):
        if child.name.lower() in lowered:
            return child
    return None


def _ci_path(parent: Path | None, *parts: str) -> Path | None:
    for part in parts:
        parent = _ci_child(parent, part)
    return parent


def _rel(path: Path | str, root: Path) -> str:
    """Path for messages: relative to root when inside it."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _frame_count(directory: Path) -> int:
    try:
        return sum(1 for p in directory.iterdir()
                   if not _hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    except OSError:
        return 0


def _media_problem(path: Path, root: Path, expect: str = "any") -> str | None:
    """None when ``path`` is a usable sample, else why not.

    ``expect``: "video", "frames" (a frame folder), "image" (one image file), "clip" (a video or a frame
    folder) or "any" (a video, a frame folder or an image). Files are checked by extension and size only
    (decoding is the build's job).
    """
    where = _rel(path, root)
    if not path.exists():
        broken = " (a broken link)" if path.is_symlink() else ""
        return f"{where} does not exist{broken}"
    if path.is_dir():
        if expect in ("video", "image"):
            return f"{where} is a folder where {'a video' if expect == 'video' else 'an image'} file was expected"
        if _frame_count(path) == 0:
            return f"frame folder {where} contains no frame images ({', '.join(IMAGE_EXTENSIONS)})"
        return None
    if expect == "frames":
        return f"{where} is a file where a folder of frame images was expected"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS and expect == "clip":
        return f"{where} is a single image, not a video or a folder of frames"
    if suffix in IMAGE_EXTENSIONS and expect != "video":
        kind = "image"
    elif expect == "image":
        return f"{where} is not an image file (extension {suffix or 'none'!r} not in {', '.join(IMAGE_EXTENSIONS)})"
    elif suffix in VIDEO_EXTENSIONS:
        kind = "video"
    elif expect == "video":
        return f"{where} is not a video file (extension {suffix or 'none'!r} not in {', '.join(VIDEO_EXTENSIONS)})"
    else:
        return (f"{where} is not a video file or an image file (extension {suffix or 'none'!r} not in "
                f"{', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
    try:
        if path.stat().st_size == 0:
            return f"{kind} {where} is empty (0 bytes)"
    except OSError as error:
        return f"{kind} {where} cannot be read ({error.strerror or error})"
    return None


def _scan_media(directory: Path, root: Path, mode: str) -> tuple[list[Path], list[SkippedEntry]]:
    """Clip candidates under directory, recursively: video files (mode "videos") or frame folders.

    In "frames" mode a folder holding images is a clip (not descended into); a folder with neither
    images nor sub-folders is an (empty) clip candidate too; files outside clip folders are skipped.
    In "videos" mode every non-video file is skipped.
    """
    found: list[Path] = []
    skipped: list[SkippedEntry] = []
    for child in _children(directory):
        if child.is_dir():
            if mode == "frames":
                if _frame_count(child) or not any(p.is_dir() for p in _children(child)):
                    found.append(child)
                    continue
            sub_found, sub_skipped = _scan_media(child, root, mode)
            found += sub_found
            skipped += sub_skipped
        elif mode == "videos" and child.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(child)
        else:
            expected = "a video file" if mode == "videos" else "a folder of frame images"
            skipped.append(SkippedEntry(child.name, str(child),
                                        f"{_rel(child, root)} is not {expected}; ignored as a clip"))
    return found, skipped


def _safe_id(text: str) -> str:
    """A clip id usable as a file-name fragment, one-to-one with the path it is made from.

    '/'-separated parts; in each, letters and digits of any script and ``._-`` stay as they are and
    every other character (a space, ``(``, ``%``...) becomes ``%XX`` per UTF-8 byte, so that distinct
    names give distinct ids (``a b`` -> ``a%20b``, ``a_b`` -> ``a_b``, ``笑顔`` -> ``笑顔``). Empty, ``.``
    and ``..`` parts are dropped.
    """
    parts = []
    for part in text.replace("\\", "/").split("/"):
        part = "".join(c if c.isalnum() or c in "._-" else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                       for c in part)
        if part and part not in (".", ".."):
            parts.append(part)
    return "/".join(parts)


def _digits_key(name: str) -> str:
    """Case-folded name, numbers without zero padding ("00012" and "12" are one clip)."""
    name = name.strip().lower()
    return str(int(name)) if name.isdigit() else name


def _strip_video_ext(name: str) -> str:
    stem, ext = os.path.splitext(name.strip())
    return stem if ext.lower() in VIDEO_EXTENSIONS else name.strip()


# ------------------------------------------------------------------------------------------------
# Split files
# ------------------------------------------------------------------------------------------------


def _split_fields(line: str) -> list[str]:
    if "," in line:
        fields = next(_csv.reader([line]))
    elif "\t" in line:
        fields = line.split("\t")
    else:
        fields = line.split()
    fields = [f.strip() for f in fields]
    while fields and not fields[-1]:
        fields.pop()
    return fields


def _looks_like_header(fields: list[str]) -> bool:
    if any(re.search(r"\d", f) for f in fields) or any(_canonical(f) for f in fields if f):
        return False
    return any(_norm(f) in _HEADER_WORDS for f in fields)


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a split / label file; blank and '#' lines dropped, header dropped."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            rows.append((number, _split_fields(stripped)))
    if rows and _looks_like_header(rows[0][1]):
        rows = rows[1:]
    return rows


def _read_split_file(path: Path, root: Path, dataset: str,
                     skipped: list[SkippedEntry]) -> list[tuple[str, int, list[str]]]:
    """(where, line, fields) rows, where = "rel/path line N"; an unreadable file becomes one skip."""
    rel = _rel(path, root)
    try:
        rows = _read_rows(path)
    except OSError as error:
        skipped.append(SkippedEntry(path.name, str(path),
                                    f"{dataset}: split file {rel} cannot be read ({error}); its clips are not listed"))
        return []
    return [(f"{rel} line {number}", number, fields) for number, fields in rows]


def _row_skip(where: str, path: Path, line: int, fields: list[str], problem: str, root: Path) -> SkippedEntry:
    """A split-file row that names no clip: its id is "<file relative to root>:<line>"."""
    return SkippedEntry(f"{_rel(path, root)}:{line}", f"{path}:{line}", f"{where} (fields {fields!r}): {problem}")


# ------------------------------------------------------------------------------------------------
# Fold datasets (DFEW, MAFW): split files set_k/{train,test} + a folder of clips
# ------------------------------------------------------------------------------------------------


@dataclass
class _Mention:
    kind: str  # "train" / "test"
    fold: int
    where: str  # "file line N"
    source: str  # "path:N"
    label: int | None
    error: str | None


def _fold_listing(dataset: str, root: Path, num_classes: int, split_files: dict[tuple[str, int], Path],
                  media_dir: Path, mode: str, parse_name: Callable[[str], tuple[str, str]],
                  codes: tuple[str, ...], expected_name: str) -> Listing:
    """Shared body of the 5-fold adapters.

    ``parse_name(text) -> (key, clip_id)`` turns a split-file name or a media file name into a match
    key and a clip id (raising _Bad when it is no clip name). A clip's label must agree in every row
    that names it; it must be in the test file of exactly one set k (split ``fold{k}``) and not in that
    set's train file; its media must exist once and be usable.
    """
    skipped: list[SkippedEntry] = []
    mentions: dict[str, list[_Mention]] = defaultdict(list)
    ids: dict[str, str] = {}
    for (kind, fold), path in sorted(split_files.items()):
        for where, line, fields in _read_split_file(path, root, dataset, skipped):
            if len(fields) != 2:
                skipped.append(_row_skip(where, path, line, fields,
                                         f"expected 2 fields (name, label), found {len(fields)}", root))
                continue
            try:
                key, clip_id = parse_name(fields[0])
            except _Bad as error:
                skipped.append(_row_skip(where, path, line, fields, str(error), root))
                continue
            ids.setdefault(key, clip_id)
            try:
                label, error = _label(fields[1], num_classes, codes=codes), None
            except _Bad as bad:
                label, error = None, f"{where}: {bad}"
            mentions[key].append(_Mention(kind, fold, where, f"{path}:{line}", label, error))

    found, media_skipped = _scan_media(media_dir, root, mode)
    skipped += media_skipped
    media: dict[str, list[Path]] = defaultdict(list)
    for path in found:
        try:
            key, clip_id = parse_name(path.name if mode == "frames" else path.stem)
        except _Bad as error:
            skipped.append(SkippedEntry(path.name, str(path), f"{_rel(path, root)}: {error}"))
            continue
        ids[key] = clip_id  # the name on disk wins over the split file's spelling
        media[key].append(path)

    clips: list[ClipEntry] = []
    what = "video" if mode == "videos" else "frame folder"
    for key in sorted(set(mentions) | set(media)):
        clip_id, rows, paths = ids[key], mentions.get(key, []), media.get(key, [])
        problems = [m.error for m in rows if m.error]
        labels = sorted({m.label for m in rows if m.label is not None})
        if len(labels) > 1:
            problems.append("different labels in different split files: " + "; ".join(
                f"{m.where} says {_class_desc(m.label, num_classes)}" for m in rows if m.label is not None))
        test_folds = sorted({m.fold for m in rows if m.kind == "test"})
        if not rows:
            problems.append(f"{what} {_rel(paths[0], root)} is not in any split file")
        elif not test_folds:
            problems.append("listed only in train split files (" + ", ".join(m.where for m in rows)
                            + ") and in no test split file, so it has no fold")
        elif len(test_folds) > 1:
            problems.append("listed in the test split files of several sets (" + ", ".join(
                m.where for m in rows if m.kind == "test") + ")")
        else:
            clash = [m.where for m in rows if m.kind == "train" and m.fold == test_folds[0]]
            if clash:
                problems.append(f"in both the test and the train file of set {test_folds[0]} "
                                f"({', '.join(clash)})")
        if not paths:
            if rows:
                expected = expected_name.format(id=clip_id)
                problems.append(f"listed in {rows[0].where} but its {what} {expected} does not exist")
        elif len(paths) > 1:
            problems.append(f"several {what}s on disk for it: " + ", ".join(_rel(p, root) for p in paths))
        else:
            problem = _media_problem(paths[0], root, "video" if mode == "videos" else "frames")
            if problem:
                problems.append(problem)
        if problems:
            source = str(paths[0]) if paths else rows[0].source
            skipped.append(SkippedEntry(clip_id, source, f"{dataset} clip {clip_id}: " + "; ".join(problems)))
        else:
            clips.append(ClipEntry(clip_id, str(paths[0]), labels[0], f"fold{test_folds[0]}"))
    return _finish(dataset, num_classes, clips, skipped)


def _class_desc(label: int, num_classes: int) -> str:
    return f"{_class_names(num_classes)[label]} (index {label})"


def _finish(dataset: str, num_classes: int, clips: list[ClipEntry], skipped: list[SkippedEntry]) -> Listing:
    clips = sorted(clips, key=lambda c: c.clip_id)
    skipped = sorted(skipped, key=lambda s: (s.clip_id, s.source, s.reason))
    return Listing(dataset, _class_names(num_classes), clips, skipped)


def _fold_split_files(dataset: str, base: Path, folders: dict[str, str], names: tuple[str, ...],
                      root: Path, expected: str) -> dict[tuple[str, int], Path]:
    """{(kind, k): file} for base/<folders[kind] with {k}>/<one of names with {kind}, {k}>."""
    files: dict[tuple[str, int], Path] = {}
    for kind, folder_name in folders.items():
        for fold in range(1, 6):
            directory = _ci_path(base, *folder_name.format(kind=kind, k=fold).split("/"))
            path = _ci_child(directory, *(n.format(kind=kind, k=fold) for n in names))
            if path is not None and path.is_file():
                files[(kind, fold)] = path
    if not any(kind == "test" for kind, _ in files):
        raise FileNotFoundError(f"{dataset}: no test split file found under {base}; expected {expected}")
    return files


def dfew(root: str | Path, *, source: str | None = None, num_classes: int = 7) -> Listing:
    """DFEW, 5-fold single-label protocol.

    Layout::

        ROOT/EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv
        ROOT/EmoLabel_DataSplit/test(single-labeled)/set_{1..5}.csv     rows "video_name,label"
        ROOT/Clip/original/<id>.mp4            (source="videos"; searched recursively)
        ROOT/Clip/clip_224x224/<id>/*.jpg      (source="frames"; default when this folder exists)

    ``video_name`` is the integer clip id (``1`` or ``00001``, a video extension is tolerated); clip ids
    are zero-padded to 5 digits. Labels 1..7 are DFEW's codes 1 happy, 2 sad, 3 neutral, 4 angry,
    5 surprise, 6 disgust, 7 fear, i.e. dferjax index = label - 1 (class names are accepted too). Split:
    ``fold{k}`` for the set k whose test file lists the clip. Skipped: labels outside 1..7, rows that
    disagree on a clip's label, clips in the test files of several sets (or in no test file), rows whose
    clip is missing on disk, clips on disk in no split file, empty frame folders, malformed rows.
    """
    expected = ("the DFEW release: EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv and "
                "Clip/clip_224x224/<id>/ frame folders or Clip/original/<id>.mp4 videos")
    root = _check_root(root, "dfew", expected)
    split_dir = _ci_child(root, "EmoLabel_DataSplit")
    if split_dir is None:
        raise FileNotFoundError(f"dfew: {root / 'EmoLabel_DataSplit'} does not exist; expected {expected}")
    files = _fold_split_files("dfew", split_dir, {"train": "train(single-labeled)", "test": "test(single-labeled)"},
                              ("set_{k}.csv", "set_{k}.txt"), root, expected)
    frames_dir, videos_dir = _ci_path(root, "Clip", "clip_224x224"), _ci_path(root, "Clip", "original")
    if source is None:
        source = "frames" if frames_dir is not None and frames_dir.is_dir() else "videos"
    if source not in ("frames", "videos"):
        raise ValueError(f"dfew: source must be 'frames' or 'videos', got {source!r}")
    media_dir = frames_dir if source == "frames" else videos_dir
    if media_dir is None or not media_dir.is_dir():
        wanted = "Clip/clip_224x224" if source == "frames" else "Clip/original"
        raise FileNotFoundError(f"dfew: {root / wanted} does not exist (source={source!r}); expected {expected}")

    def parse_name(text: str) -> tuple[str, str]:
        name = _strip_video_ext(text)
        if not name.isdigit():
            raise _Bad(f"{text!r} is not an integer DFEW clip id")
        return str(int(name)), f"{int(name):05d}"

    expected_name = "Clip/clip_224x224/{id}/" if source == "frames" else "Clip/original/{id}.mp4"
    return _fold_listing("dfew", root, num_classes, files, media_dir, source, parse_name, DFEW_CODES,
                         expected_name)


def mafw(root: str | Path, *, num_classes: int = 11) -> Listing:
    """MAFW, 5-fold single-label protocol (11 classes).

    Layout::

        ROOT/data/clips/<name>.mp4   (searched recursively)
        ROOT/Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt   (or .csv)

    Rows ``<name>.mp4 <label>`` (whitespace or comma separated; the extension is optional). The label is
    a class name (anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety,
    helplessness, disappointment, any case, DFEW-style names and synonyms too) or an integer 1..11 in
    MAFW's order (1 anger, 2 disgust, 3 fear, 4 happiness, 5 neutral, 6 sadness, 7 surprise, 8 contempt,
    9 anxiety, 10 helplessness, 11 disappointment), mapped by name to dferjax.labels.MAFW_CLASSES
    (happy, sad, neutral, angry, surprise, disgust, fear, contempt, anxiety, helplessness,
    disappointment): codes 1..11 -> indices 3, 5, 6, 0, 2, 1, 4, 7, 8, 9, 10. Clip id = the video's
    file stem on disk. Split ``fold{k}`` and skip rules as for :func:`dfew`.
    """
    expected = ("the MAFW release: data/clips/<name>.mp4 and "
                "'Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt'")
    root = _check_root(root, "mafw", expected)
    split_dir = _ci_path(root, "Train & Test Set", "single", "no_caption")
    if split_dir is None:
        raise FileNotFoundError(f"mafw: {root / 'Train & Test Set/single/no_caption'} does not exist; "
                                f"expected {expected}")
    files = _fold_split_files("mafw", split_dir, {"train": "set_{k}", "test": "set_{k}"},
                              ("{kind}.txt", "{kind}.csv"), root, expected)
    media_dir = _ci_path(root, "data", "clips")
    if media_dir is None or not media_dir.is_dir():
        raise FileNotFoundError(f"mafw: {root / 'data/clips'} does not exist; expected {expected}")

    def parse_name(text: str) -> tuple[str, str]:
        name = _strip_video_ext(text.replace("\\", "/").rsplit("/", 1)[-1])
        clip_id = _safe_id(name)
        if not clip_id:
            raise _Bad(f"{text!r} is not a MAFW clip name")
        return _digits_key(name), clip_id

    return _fold_listing("mafw", root, num_classes, files, media_dir, "videos", parse_name, MAFW_CODES,
                         "data/clips/{id}.mp4")


# ------------------------------------------------------------------------------------------------
# FERV39k
# ------------------------------------------------------------------------------------------------


def _ferv_key(parts: Iterable[str]) -> str:
    return "/".join(_digits_key(p) for p in parts)


def ferv39k(root: str | Path, *, num_classes: int = 7) -> Listing:
    """FERV39k, fixed train/test split, 7 classes.

    Layout::

        ROOT/2_ClipsforFaceCrop/<scene>/<emotion>/<clip>/*.jpg
        ROOT/4_setups/All_scenes/train_All.csv, test_All.csv   (.txt accepted)

    Each row names a clip by ``<scene>/<emotion>/<clip>`` (a leading ``2_ClipsforFaceCrop/`` is removed;
    ``\\`` accepted) optionally followed by a separator and an integer label, which is not used: the
    label is the emotion folder's name, Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise -> dferjax
    indices 3, 5, 6, 0, 2, 1, 4. Clip id ``<scene>/<emotion>/<clip>`` with the folder names' spelling on
    disk; scene = ``<scene>``; split "train" / "test" by the file listing it. Skipped: rows naming missing
    folders, folders in no split file or in both, unknown emotion folders, empty frame folders,
    stray files, malformed rows.
    """
    expected = ("the FERV39k release: 2_ClipsforFaceCrop/<scene>/<emotion>/<clip>/ frame folders and "
                "4_setups/All_scenes/{train,test}_All.csv")
    root = _check_root(root, "ferv39k", expected)
    clips_dir = _ci_child(root, "2_ClipsforFaceCrop")
    setups = _ci_path(root, "4_setups", "All_scenes")
    files = {kind: _ci_child(setups, f"{kind}_All.csv", f"{kind}_All.txt") for kind in ("train", "test")}
    files = {kind: path for kind, path in files.items() if path is not None and path.is_file()}
    if not files:
        raise FileNotFoundError(f"ferv39k: no split file {root / '4_setups/All_scenes/{train,test}_All.csv'}; "
                                f"expected {expected}")
    if clips_dir is None or not clips_dir.is_dir():
        raise FileNotFoundError(f"ferv39k: {root / '2_ClipsforFaceCrop'} does not exist; expected {expected}")

    skipped: list[SkippedEntry] = []
    disk: dict[str, Path] = {}
    for scene in _children(clips_dir):
        if not scene.is_dir():
            skipped.append(SkippedEntry(scene.name, str(scene), f"{_rel(scene, root)} is a file where a scene "
                                        "folder was expected; ignored"))
            continue
        for emotion in _children(scene):
            if not emotion.is_dir():
                skipped.append(SkippedEntry(f"{scene.name}/{emotion.name}", str(emotion),
                                            f"{_rel(emotion, root)} is a file where an emotion folder was "
                                            "expected; ignored"))
                continue
            for clip in _children(emotion):
                disk[_ferv_key((scene.name, emotion.name, clip.name))] = clip

    mentions: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # key -> (kind, where, source)
    row_parts: dict[str, tuple[str, ...]] = {}
    for kind, path in sorted(files.items()):
        for where, line, fields in _read_split_file(path, root, "ferv39k", skipped):
            if len(fields) not in (1, 2) or (len(fields) == 2 and not re.fullmatch(r"[+-]?\d+", fields[1])):
                skipped.append(_row_skip(where, path, line, fields,
                                         "expected '<scene>/<emotion>/<clip>' optionally followed by an "
                                         "integer label", root))
                continue
            parts = [p for p in fields[0].replace("\\", "/").split("/") if p not in ("", ".")]
            if parts and parts[0].lower() == "2_clipsforfacecrop":
                parts = parts[1:]
            if len(parts) != 3:
                skipped.append(_row_skip(where, path, line, fields,
                                         f"clip path {fields[0]!r} is not <scene>/<emotion>/<clip>", root))
                continue
            key = _ferv_key(parts)
            row_parts.setdefault(key, tuple(parts))
            mentions[key].append((kind, where, f"{path}:{line}"))

    clips: list[ClipEntry] = []
    for key in sorted(set(disk) | set(mentions)):
        rows = mentions.get(key, [])
        path = disk.get(key)
        if path is not None:
            parts = (path.parent.parent.name, path.parent.name, path.name)
        else:
            parts = row_parts[key]
        clip_id = _safe_id("/".join(parts))
        problems = []
        kinds = sorted({kind for kind, _, _ in rows})
        if not rows:
            problems.append(f"clip folder {_rel(path, root)} is not in any split file")
        elif len(kinds) > 1:
            problems.append("listed in both the train and the test split file ("
                            + ", ".join(where for _, where, _ in rows) + ")")
        try:
            label = _label(parts[1], num_classes)
        except _Bad as error:
            label = None
            problems.append(f"emotion folder {parts[1]!r}: {error}")
        if path is None:
            problems.append(f"listed in {rows[0][1]} but its frame folder "
                            f"2_ClipsforFaceCrop/{'/'.join(parts)}/ does not exist")
        else:
            problem = _media_problem(path, root, "frames")
            if problem:
                problems.append(problem)
        if problems:
            source = str(path) if path is not None else rows[0][2]
            skipped.append(SkippedEntry(clip_id, source, f"ferv39k clip {clip_id}: " + "; ".join(problems)))
        else:
            clips.append(ClipEntry(clip_id, str(path), label, kinds[0], scene=parts[0]))
    return _finish("ferv39k", num_classes, clips, skipped)


# ------------------------------------------------------------------------------------------------
# Labelled folder trees (AFEW, folder)
# ------------------------------------------------------------------------------------------------


def _label_tree(dataset: str, root: Path, top: Path, split: str | None, num_classes: int,
                test_fraction: float, clips: list[ClipEntry], skipped: list[SkippedEntry],
                expect: str = "any") -> None:
    """Read top/<label>/<video, frame folder or image>; clip id = path below root without extension.

    ``expect`` is the media a sample may be (see :func:`_media_problem`): "any", or "clip" (no images).
    """
    prefix = _rel(top, root) + "/" if top != root else ""
    seen: dict[str, Path] = {}
    for label_dir in _children(top):
        if not label_dir.is_dir():
            skipped.append(SkippedEntry(_safe_id(prefix + label_dir.name), str(label_dir),
                                        f"{_rel(label_dir, root)} is not inside a label folder "
                                        f"(expected {prefix}<label>/<clip>); ignored"))
            continue
        try:
            label, label_error = _label(label_dir.name, num_classes), None
        except _Bad as error:
            label, label_error = None, str(error)
        entries = _children(label_dir)
        stems = [entry.name if entry.is_dir() else entry.stem for entry in entries]
        for entry, stem in zip(entries, stems):
            if stems.count(stem) > 1:          # clip.mp4 beside clip.avi or a folder clip/: keep the extension
                stem = entry.name
            clip_id = _safe_id(f"{prefix}{label_dir.name}/{stem}")
            if label_error:
                skipped.append(SkippedEntry(clip_id, str(entry), f"{_rel(entry, root)} is in label folder "
                                            f"{label_dir.name!r}, which names no class: {label_error}"))
                continue
            problem = _media_problem(entry, root, expect)
            if problem:
                skipped.append(SkippedEntry(clip_id, str(entry), f"{dataset} clip {clip_id}: {problem}"))
                continue
            if clip_id in seen:
                skipped.append(SkippedEntry(clip_id, str(entry), f"{dataset}: {_rel(entry, root)} has the same "
                                            f"clip id {clip_id!r} as {_rel(seen[clip_id], root)}, which is kept"))
                continue
            seen[clip_id] = entry
            clips.append(ClipEntry(clip_id, str(entry), label, split or hash_split(clip_id, test_fraction)))


_AFEW_SPLITS = (("Train", "train"), ("Val", "test"), ("Validation", "test"), ("Valid", "test"))


def afew(root: str | Path, *, num_classes: int = 7) -> Listing:
    """AFEW (EmotiW), 7 classes, fixed split: train on Train, evaluate on Val.

    Layout: ``ROOT/Train/<Emotion>/*.avi`` -> split "train", ``ROOT/Val/<Emotion>/*.avi`` (also
    ``Validation``) -> split "test"; any video extension, and frame folders in place of videos, are
    accepted. Emotion folders Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise (any case, synonyms)
    -> dferjax indices 3, 5, 6, 0, 2, 1, 4. Clip id ``<Split>/<Emotion>/<stem>`` as spelled on disk.
    Skipped: every clip of an unknown emotion folder, non-media files, single images (AFEW is a video
    set), empty videos or frame folders, files outside emotion folders. Other top-level folders (AFEW's
    unlabelled Test) are not read.
    """
    expected = "the AFEW layout Train/<Emotion>/*.avi and Val/<Emotion>/*.avi"
    root = _check_root(root, "afew", expected)
    clips: list[ClipEntry] = []
    skipped: list[SkippedEntry] = []
    found = False
    for child in _children(root):
        split = next((s for name, s in _AFEW_SPLITS if child.name.lower() == name.lower()), None)
        if split is not None and child.is_dir():
            found = True
            _label_tree("afew", root, child, split, num_classes, 0.0, clips, skipped, expect="clip")
    if not found:
        raise FileNotFoundError(f"afew: {root} has no Train/ or Val/ folder; expected {expected}")
    return _finish("afew", num_classes, clips, skipped)


_SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "test", "validation": "test"}


def folder(root: str | Path, *, num_classes: int = 7, test_fraction: float = 0.2) -> Listing:
    """A generic labelled folder tree of videos, frame folders or still images.

    Layout: ``ROOT/<label>/<clip>.<video ext>``, ``ROOT/<label>/<clip>/<frame images>`` (a folder of
    images under a label folder is one clip of frames) or ``ROOT/<label>/<image>.<image ext>`` (one
    still image, a sample of one frame); the three may be mixed. When every
    top-level folder is a split name (train, test; val / validation count as test) the layout is
    ``ROOT/<split>/<label>/...`` and the split comes from the folder. Otherwise the split is
    :func:`hash_split` of the clip id with ``test_fraction`` (default 0.2). Label folder names map to
    dferjax classes case-insensitively with synonyms (happiness -> happy, anger -> angry, sadness -> sad,
    surprised -> surprise, disgusted -> disgust, fearful -> fear, neutrality -> neutral, ...; the four
    contempt needs ``num_classes=8`` or 11, the four MAFW classes ``num_classes=11``). Clip id =
    ``[<split>/]<label folder>/<stem>`` (with the extension where two entries share a stem).
    Skipped: every clip in an unknown label folder, files that are no video or image, empty frame
    folders, videos and images, files outside label folders.
    """
    expected = "ROOT/<label>/<video, frame folder or image>, optionally under ROOT/{train,test}/"
    root = _check_root(root, "folder", expected)
    test_fraction = _check_fraction(test_fraction)
    top_dirs = [c for c in _children(root) if c.is_dir()]
    if not top_dirs:
        raise ValueError(f"folder: {root} has no sub-folders; expected {expected}")
    clips: list[ClipEntry] = []
    skipped: list[SkippedEntry] = []
    if all(c.name.lower() in _SPLIT_FOLDERS for c in top_dirs):
        for child in _children(root):
            if child.is_dir():
                _label_tree("folder", root, child, _SPLIT_FOLDERS[child.name.lower()], num_classes,
                            test_fraction, clips, skipped)
            else:
                skipped.append(SkippedEntry(_safe_id(child.name), str(child),
                                            f"{child.name} is not inside a split/label folder "
                                            f"(expected <split>/<label>/<clip>); ignored"))
    else:
        _label_tree("folder", root, root, None, num_classes, test_fraction, clips, skipped)
    return _finish("folder", num_classes, clips, skipped)


# ------------------------------------------------------------------------------------------------
# Label file
# ------------------------------------------------------------------------------------------------

_SPLIT_VALUES = {"train": "train", "training": "train", "test": "test", "testing": "test", "val": "test",
                 "valid": "test", "validation": "test"}


def csv_labels(root: str | Path, *, csv: str | Path | None = None, num_classes: int = 7,
               test_fraction: float = 0.2) -> Listing:
    """A label file listing clips.

    Layout: option ``csv`` (default ``ROOT/labels.csv``; a relative path is taken relative to ROOT),
    rows ``path,label[,split]`` (header optional, whitespace separation accepted for paths without
    spaces). ``path`` is a video file, a frame folder or an image file (a still image, a sample of one
    frame), relative to ROOT unless absolute. ``label`` is a
    class name (any case, synonyms as for :func:`folder`) or a 0-based dferjax index. ``split`` is
    train / test (val, validation -> test) or fold1..fold5; when absent, :func:`hash_split` of the clip
    id with ``test_fraction``. Clip id = the path relative to ROOT without its extension (an absolute
    path outside ROOT: the path without its anchor). Skipped, naming the row: malformed rows, bad
    labels or splits, missing or non-media paths, a path listed twice.
    """
    expected = "a label file ROOT/labels.csv (or option csv=...) with rows path,label[,split]"
    root = _check_root(root, "csv", expected)
    test_fraction = _check_fraction(test_fraction)
    label_file = Path(csv).expanduser() if csv is not None else root / "labels.csv"
    if not label_file.is_absolute():
        label_file = root / label_file
    if not label_file.is_file():
        raise FileNotFoundError(f"csv: label file {label_file} does not exist; expected {expected}")

    clips: list[ClipEntry] = []
    skipped: list[SkippedEntry] = []
    seen: dict[str, str] = {}
    for where, line, fields in _read_split_file(label_file, root, "csv", skipped):
        where = f"{label_file.name} row {line}"
        if len(fields) not in (2, 3) or not fields[0]:
            skipped.append(_row_skip(where, label_file, line, fields,
                                     f"expected 'path,label[,split]', found {len(fields)} fields", root))
            continue
        raw = Path(fields[0].replace("\\", "/")).expanduser()
        path = Path(os.path.normpath(raw if raw.is_absolute() else root / raw))
        try:
            id_source = path.relative_to(root)
        except ValueError:
            id_source = Path(*path.parts[1:])
        if path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            id_source = id_source.with_suffix("")
        clip_id = _safe_id(id_source.as_posix())
        problems = []
        try:
            label = _label(fields[1], num_classes, zero_based=True)
        except _Bad as error:
            label = None
            problems.append(str(error))
        split = fields[2].strip().lower() if len(fields) == 3 and fields[2].strip() else None
        if split is not None:
            if re.fullmatch(r"fold[1-9]\d*", split):
                pass
            elif split in _SPLIT_VALUES:
                split = _SPLIT_VALUES[split]
            else:
                problems.append(f"split {fields[2]!r} is not train, test or fold<k>")
        problem = _media_problem(path, root)
        if problem:
            problems.append(problem)
        if not problems and clip_id in seen:
            problems.append(f"clip id {clip_id!r} already listed in {seen[clip_id]}")
        if problems:
            skipped.append(SkippedEntry(clip_id or f"{_rel(label_file, root)}:{line}", f"{label_file}:{line}",
                                        f"{where} (fields {fields!r}): " + "; ".join(problems)))
            continue
        seen[clip_id] = where
        clips.append(ClipEntry(clip_id, str(path), label, split or hash_split(clip_id, test_fraction)))
    return _finish("csv", num_classes, clips, skipped)


# ------------------------------------------------------------------------------------------------
# Still-image data sets (RAF-DB, AffectNet, FERPlus): every sample is one image
# ------------------------------------------------------------------------------------------------

# Label codes of the still-image sets, in each set's own order, as dferjax class names.
RAFDB_CODES = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")  # RAF-DB basic 1..7
AFFECTNET_CODES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")  # 0..7
AFFECTNET_NON_CLASSES = {8: "none", 9: "uncertain", 10: "no-face"}  # AffectNet codes 8..10: no expression
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")  # fer2013new.csv's ten vote columns, in its order


def _check_classes(dataset: str, num_classes: int, allowed: tuple[int, ...]) -> int:
    if num_classes not in allowed:
        raise ValueError(f"{dataset}: num_classes must be {' or '.join(map(str, allowed))}, got {num_classes!r}")
    return num_classes


def _contempt_needs_8(what: str, num_classes: int) -> None:
    if num_classes == 7:
        raise _Bad(f"{what} is contempt, which is a class only with num_classes=8")


def _table(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank rows of a csv file, streamed (AffectNet's lists and
    fer2013.csv are hundreds of megabytes)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = _csv.reader(handle)
        for fields in reader:
            fields = [f.strip() for f in fields]
            if any(fields):
                yield reader.line_num, fields


def _read_table(path: Path) -> tuple[list[str] | None, Iterator[tuple[int, list[str]]]]:
    """A csv file as (header fields or None, its other rows streamed); blank rows dropped.

    The first row is the header when none of its fields is a number.
    """
    rows = _table(path)
    first = next(rows, None)
    if first is None:
        return None, iter(())
    if not any(re.fullmatch(r"[+-]?\d+(\.\d*)?", f) for f in first[1]):
        return first[1], rows
    return None, itertools.chain([first], rows)


def _columns(header: list[str] | None, wanted: tuple[str, ...], path: Path, dataset: str) -> list[int]:
    """Indices of the ``wanted`` columns: by name (any case, spaces and underscores ignored) when the
    file has a header, else the positions 0, 1, ... in ``wanted``'s order."""
    if header is None:
        return list(range(len(wanted)))
    names = [re.sub(r"[\s_]", "", h).lower() for h in header]
    missing = [w for w in wanted if re.sub(r"[\s_]", "", w).lower() not in names]
    if missing:
        raise ValueError(f"{dataset}: {path} has no column {', '.join(map(repr, missing))} "
                         f"(its header: {','.join(header)})")
    return [names.index(re.sub(r"[\s_]", "", w).lower()) for w in wanted]


@dataclass
class _ImageRow:
    """One row of a still-image data set's label file, before duplicates are resolved."""
    where: str  # "file line N" for messages
    row_source: str  # "path:N"
    clip_id: str
    split: str
    path: Path | None = None  # the image on disk (None: missing)
    label: int | None = None
    problems: list[str] = field(default_factory=list)
    face_box: tuple[float, float, float, float] | None = None
    image: Any = None  # pixels of an image that is no file (FER2013)


def _image_rows(dataset: str, rows: dict[str, list[_ImageRow]], num_classes: int,
                skipped: list[SkippedEntry]) -> list[ClipEntry]:
    """Listed images from rows grouped by clip id: a clip named by several rows is kept once (its first
    good row) when they agree on the label, and skipped in every row when they do not."""
    clips: list[ClipEntry] = []
    for mentions in rows.values():
        labels = {m.label for m in mentions if m.label is not None}
        kept = next((m for m in mentions if not m.problems), None)
        for m in mentions:
            problems = list(m.problems)
            if len(labels) > 1:
                problems.append("listed with different labels: " + "; ".join(
                    f"{other.where} says {_class_desc(other.label, num_classes)}"
                    for other in mentions if other.label is not None))
            elif m is not kept and not problems:
                problems.append(f"listed again (first in {kept.where}, which is kept)")
            source = str(m.path) if m.path is not None else m.row_source
            if problems:
                skipped.append(SkippedEntry(m.clip_id, source, f"{dataset} {m.clip_id} ({m.where}): "
                                            + "; ".join(problems)))
            else:
                clips.append(ClipEntry(m.clip_id, source, m.label, m.split, image=m.image, face_box=m.face_box))
    return clips


def rafdb(root: str | Path, *, images: str = "aligned") -> Listing:
    """RAF-DB basic emotions (Li, Deng, Du 2017), 7 classes, fixed train/test split.

    Layout::

        ROOT/EmoLabel/list_patition_label.txt   (RAF-DB's spelling; list_partition_label.txt accepted,
                                                 also directly in ROOT) lines "train_00001.jpg 5"
        ROOT/Image/aligned/train_00001_aligned.jpg    (images="aligned", the default: 100x100 face crops)
        ROOT/Image/original/train_00001.jpg           (images="original": the whole photos)

    Labels 1..7 are RAF-DB's codes 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger,
    7 neutral -> dferjax indices 4, 6, 5, 0, 1, 3, 2. Split from the name's prefix: ``train_`` -> "train",
    ``test_`` -> "test". Clip id = the listed name without its extension (``train_00001``). File names
    match case-insensitively. Skipped, naming the line or file: malformed lines (not two fields), names
    without a train_/test_ prefix, unknown label codes, listed images missing or empty on disk, a name
    listed twice (every line of it when the labels differ, else the repeats), images on disk that the
    label file does not list, and files in the image folder that are no image.
    """
    expected = ("the RAF-DB basic release: EmoLabel/list_patition_label.txt and Image/aligned/<name>_aligned.jpg "
                "(or Image/original/<name>)")
    root = _check_root(root, "rafdb", expected)
    if images not in ("aligned", "original"):
        raise ValueError(f"rafdb: images must be 'aligned' or 'original', got {images!r}")
    names = ("list_patition_label.txt", "list_partition_label.txt")
    label_file = _ci_child(_ci_child(root, "EmoLabel"), *names) or _ci_child(root, *names)
    if label_file is None or not label_file.is_file():
        raise FileNotFoundError(f"rafdb: {root / 'EmoLabel/list_patition_label.txt'} does not exist; "
                                f"expected {expected}")
    image_dir = _ci_path(root, "Image", images)
    if image_dir is None or not image_dir.is_dir():
        raise FileNotFoundError(f"rafdb: {root / 'Image' / images} does not exist (images={images!r}); "
                                f"expected {expected}")
    skipped: list[SkippedEntry] = []
    disk: dict[str, Path] = {}
    for child in _children(image_dir):
        if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS:
            disk[child.name.lower()] = child
        else:
            what = "a folder" if child.is_dir() else "not an image file"
            skipped.append(SkippedEntry(_safe_id(child.name), str(child),
                                        f"rafdb: {_rel(child, root)} is {what}; ignored"))

    claimed: set[str] = set()
    rows: dict[str, list[_ImageRow]] = defaultdict(list)
    for where, line, fields in _read_split_file(label_file, root, "rafdb", skipped):
        if len(fields) != 2:
            skipped.append(_row_skip(where, label_file, line, fields,
                                     f"expected '<name>.jpg <label 1..7>', found {len(fields)} fields", root))
            continue
        name = Path(fields[0].replace("\\", "/"))
        split = name.stem.split("_", 1)[0].lower()
        if split not in ("train", "test") or "_" not in name.stem:
            skipped.append(_row_skip(where, label_file, line, fields,
                                     f"name {fields[0]!r} does not start with train_ or test_ (RAF-DB's split)", root))
            continue
        wanted = f"{name.stem}_aligned{name.suffix or '.jpg'}" if images == "aligned" else name.name
        path = disk.get(wanted.lower())
        claimed.add(wanted.lower())
        row = _ImageRow(where, f"{label_file}:{line}", _safe_id(name.stem), split, path)
        try:
            row.label = _label(fields[1], 7, codes=RAFDB_CODES)
        except _Bad as bad:
            row.problems.append(f"unknown label code: {bad}")
        problem = (f"its image {_rel(image_dir / wanted, root)} does not exist" if path is None
                   else _media_problem(path, root, "image"))
        if problem:
            row.problems.append(problem)
        rows[row.clip_id.lower()].append(row)
    clips = _image_rows("rafdb", rows, 7, skipped)
    for name, path in disk.items():
        if name not in claimed:
            stem = path.stem[:-len("_aligned")] if path.stem.lower().endswith("_aligned") else path.stem
            skipped.append(SkippedEntry(_safe_id(stem), str(path), f"rafdb: image {_rel(path, root)} is not "
                                        f"listed in {_rel(label_file, root)}; ignored"))
    return _finish("rafdb", 7, clips, skipped)


def _affectnet_label(text: str, num_classes: int) -> int:
    """An AffectNet expression code (0..10, as text) -> dferjax index, or _Bad saying why it is no class."""
    raw = text.strip()
    if not re.fullmatch(r"[+-]?\d+(\.0*)?", raw):
        raise _Bad(f"expression {raw!r} is not an integer code 0..10")
    code = int(float(raw))
    if code in AFFECTNET_NON_CLASSES:
        raise _Bad(f"expression {code} ({AFFECTNET_NON_CLASSES[code]}) is not a class")
    if not 0 <= code < len(AFFECTNET_CODES):
        raise _Bad(f"expression {code} is outside AffectNet's codes 0..10")
    if AFFECTNET_CODES[code] == "contempt":
        _contempt_needs_8(f"expression {code}", num_classes)
    return MAFW_CLASSES.index(AFFECTNET_CODES[code])


def _npy_text(path: Path) -> str:
    """The one value a numpy file holds (a string, bytes or number array of one element) as text."""
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise _Bad(f"cannot be read as a numpy file ({error})") from None
    if not isinstance(value, np.ndarray) or value.size != 1:
        shape = getattr(value, "shape", "?")
        raise _Bad(f"holds an array of shape {shape}, not one expression code")
    item = value.reshape(()).item()
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


_AFFECTNET_SETS = (("train_set", "train"), ("val_set", "test"))
_AFFECTNET_CSVS = (("training.csv", "train"), ("validation.csv", "test"))
_AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                      "facial_landmarks", "expression")


def affectnet_layout(root: str | Path) -> str | None:
    """Which AffectNet layout ROOT holds: "sets" (train_set/, val_set/), "csv" (the original file
    lists) or None (neither)."""
    root = Path(root).expanduser()
    if any(_ci_child(root, name) is not None and _ci_child(root, name).is_dir() for name, _ in _AFFECTNET_SETS):
        return "sets"
    if _affectnet_csvs(root):
        return "csv"
    return None


def _affectnet_csvs(root: Path) -> list[tuple[Path, str]]:
    found = []
    for name, split in _AFFECTNET_CSVS:
        path = _ci_child(_ci_child(root, "Manually_Annotated_file_lists"), name) or _ci_child(root, name)
        if path is not None and path.is_file():
            found.append((path, split))
    return found


def affectnet(root: str | Path, *, num_classes: int = 7, layout: str | None = None) -> Listing:
    """AffectNet, the manually annotated images (Mollahosseini, Hasani, Mahoor 2017), 7 or 8 classes.

    Two public layouts, detected (``layout=None``) or chosen with ``layout="sets"`` / ``"csv"``:

    ``sets`` (the 224x224 face crops)::

        ROOT/train_set/images/<id>.jpg   ROOT/train_set/annotations/<id>_exp.npy   -> split "train"
        ROOT/val_set/images/<id>.jpg     ROOT/val_set/annotations/<id>_exp.npy     -> split "test"

    ``<id>_exp.npy`` holds the expression code as a one-element string or number array (read with
    ``allow_pickle=False``); the other annotation files (``_aro``, ``_val``, ``_lnd``) are not read.
    Clip id ``train_set/<id>`` / ``val_set/<id>`` (the ids of the two sets overlap). Skipped: an image
    without ``_exp.npy``, an ``_exp.npy`` without image, unreadable annotation files, files in
    ``images/`` that are no image or are empty.

    ``csv`` (the original release)::

        ROOT/Manually_Annotated_file_lists/training.csv   -> split "train"  (also ROOT/training.csv)
        ROOT/Manually_Annotated_file_lists/validation.csv -> split "test"   (also ROOT/validation.csv)
        ROOT/Manually_Annotated_Images/<subDirectory_filePath>              (also ROOT/<subDirectory_filePath>)

    Columns ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,
    valence,arousal`` (by header name; in this order when the file has no header). The face box
    becomes ``ClipEntry.face_box = (x, y, x + w, y + h)``: the landmarks are fitted in it, nothing is
    detected. Clip id = ``subDirectory_filePath`` without its extension. Skipped, naming the file and
    line: rows with too few columns, a face box that is no box (not numbers, width or height <= 0),
    missing or empty images, a path listed twice (see RAF-DB's rule: kept once when the labels agree).
    Images on disk that no file list names are not looked for (the folders hold about a million).

    Expression codes (both layouts): 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger,
    7 contempt -> dferjax indices 2, 0, 1, 4, 6, 5, 3, 7. Codes 8 none, 9 uncertain and 10 no-face are
    no expression and are skipped ("expression 9 (uncertain) is not a class"); contempt (7) is a class
    with ``num_classes=8`` only and is skipped, saying so, with the default 7 (AffectNet-7).
    """
    expected = ("the AffectNet layout train_set/{images,annotations}/ and val_set/... or "
                "Manually_Annotated_file_lists/{training,validation}.csv with Manually_Annotated_Images/")
    root = _check_root(root, "affectnet", expected)
    _check_classes("affectnet", num_classes, (7, 8))
    if layout is None:
        layout = affectnet_layout(root)
        if layout is None:
            raise FileNotFoundError(f"affectnet: {root} has neither train_set/ or val_set/ folders nor "
                                    f"training.csv / validation.csv; expected {expected}")
    if layout not in ("sets", "csv"):
        raise ValueError(f"affectnet: layout must be 'sets' or 'csv', got {layout!r}")
    skipped: list[SkippedEntry] = []
    rows: dict[str, list[_ImageRow]] = defaultdict(list)
    if layout == "sets":
        _affectnet_sets(root, num_classes, expected, rows, skipped)
    else:
        _affectnet_csv(root, num_classes, expected, rows, skipped)
    return _finish("affectnet", num_classes, _image_rows("affectnet", rows, num_classes, skipped), skipped)


def _affectnet_sets(root: Path, num_classes: int, expected: str, rows: dict[str, list[_ImageRow]],
                    skipped: list[SkippedEntry]) -> None:
    sets = [(folder_, split) for name, split in _AFFECTNET_SETS
            if (folder_ := _ci_child(root, name)) is not None and folder_.is_dir()]
    if not sets:
        raise FileNotFoundError(f"affectnet: {root} has no train_set/ or val_set/ folder (layout='sets'); "
                                f"expected {expected}")
    for set_dir, split in sets:
        images_dir, notes_dir = _ci_child(set_dir, "images"), _ci_child(set_dir, "annotations")
        for what, directory in (("images", images_dir), ("annotations", notes_dir)):
            if directory is None or not directory.is_dir():
                raise FileNotFoundError(f"affectnet: {set_dir / what} does not exist; expected {expected}")
        images: dict[str, Path] = {}
        for child in _children(images_dir):
            if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS:
                images[_digits_key(child.stem)] = child
            else:
                skipped.append(SkippedEntry(_safe_id(f"{set_dir.name}/{child.name}"), str(child),
                                            f"affectnet: {_rel(child, root)} is not an image file; ignored"))
        labels: dict[str, Path] = {}
        for child in _children(notes_dir):
            if child.is_file() and child.name.lower().endswith("_exp.npy"):
                labels[_digits_key(child.name[:-len("_exp.npy")])] = child
        for key in sorted(set(images) | set(labels), key=lambda k: (len(k), k)):
            image, note = images.get(key), labels.get(key)
            stem = image.stem if image is not None else note.name[:-len("_exp.npy")]
            row = _ImageRow(f"{set_dir.name}/{stem}", str(note or image), _safe_id(f"{set_dir.name}/{stem}"),
                            split, image)
            if note is None:
                row.problems.append(f"image {_rel(image, root)} has no annotation "
                                    f"{_rel(notes_dir, root)}/{stem}_exp.npy")
            else:
                try:
                    row.label = _affectnet_label(_npy_text(note), num_classes)
                except _Bad as bad:
                    row.problems.append(f"{_rel(note, root)}: {bad}")
            if image is None:
                row.problems.append(f"annotation {_rel(note, root)} has no image {_rel(images_dir, root)}/{stem}.jpg")
            elif problem := _media_problem(image, root, "image"):
                row.problems.append(problem)
            rows[row.clip_id.lower()].append(row)


def _affectnet_csv(root: Path, num_classes: int, expected: str, rows: dict[str, list[_ImageRow]],
                   skipped: list[SkippedEntry]) -> None:
    files = _affectnet_csvs(root)
    if not files:
        raise FileNotFoundError(f"affectnet: no {root / 'Manually_Annotated_file_lists/training.csv'} or "
                                f"validation.csv (layout='csv'); expected {expected}")
    image_dirs = [d for d in (_ci_child(root, "Manually_Annotated_Images"), root) if d is not None]
    for path, split in files:
        header, table = _read_table(path)
        columns = _columns(header, _AFFECTNET_COLUMNS, path, "affectnet")
        where_file = _rel(path, root)
        for line, fields in table:
            where = f"{where_file} line {line}"
            if len(fields) <= max(columns) or not fields[columns[0]]:
                skipped.append(_row_skip(where, path, line, fields, f"expected the columns "
                                         f"{','.join(_AFFECTNET_COLUMNS)},..., found {len(fields)} fields", root))
                continue
            name, x, y, w, h, _, expression = (fields[c] for c in columns)
            rel = Path(name.replace("\\", "/"))
            clip_path = rel.with_suffix("") if rel.suffix.lower() in IMAGE_EXTENSIONS else rel
            image = next((d / rel for d in image_dirs if (d / rel).exists()), None)
            row = _ImageRow(where, f"{path}:{line}", _safe_id(clip_path.as_posix()), split, image)
            try:
                row.label = _affectnet_label(expression, num_classes)
            except _Bad as bad:
                row.problems.append(str(bad))
            try:
                box = tuple(float(v) for v in (x, y, w, h))
                if not all(map(math.isfinite, box)) or box[2] <= 0 or box[3] <= 0:
                    raise ValueError
                row.face_box = (box[0], box[1], box[0] + box[2], box[1] + box[3])
            except ValueError:
                row.problems.append(f"face box (face_x, face_y, face_width, face_height) = ({x}, {y}, {w}, {h}) "
                                    "is not a box")
            if image is None:
                row.problems.append(f"image {_rel(image_dirs[0] / rel, root)} does not exist")
            elif problem := _media_problem(image, root, "image"):
                row.problems.append(problem)
            rows[row.clip_id.lower()].append(row)


_FER_SPLITS = {"training": "train", "publictest": "test", "privatetest": "test_private"}
_FER_SIDE = 48


def _fer_file(root: Path, name: str) -> Path | None:
    """``name`` in ROOT, ROOT/data, ROOT/fer2013 or ROOT/FERPlus (any case)."""
    for parts in ((), ("data",), ("fer2013",), ("FERPlus",)):
        path = _ci_child(_ci_path(root, *parts) if parts else root, name)
        if path is not None and path.is_file():
            return path
    return None


def _fer_pixels(text: str) -> np.ndarray:
    """FER2013's pixel string (48 x 48 space-separated integers 0..255, row by row) -> uint8 (48, 48)."""
    with warnings.catch_warnings():     # numpy parses the 36k strings in C; a malformed one fails here
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
    side = _FER_SIDE
    if values is None or values.size != side * side:
        tokens = text.split()
        if len(tokens) != side * side:
            raise _Bad(f"pixels hold {len(tokens)} values, not {side} x {side} = {side * side}")
        bad = next((t for t in tokens if not t.lstrip("+-").isdigit()), "?")
        raise _Bad(f"pixel value {bad!r} is not an integer 0..255")
    outside = values[(values < 0) | (values > 255)]
    if outside.size:
        raise _Bad(f"pixel value {outside[0]} is outside 0..255")
    return values.astype(np.uint8).reshape(side, side)


def _ferplus_label(votes: list[int], vote: str, num_classes: int) -> int:
    """FERPlus's ten votes (FERPLUS_COLUMNS order) -> dferjax index, or _Bad saying why the image has none."""
    said = ", ".join(f"{name} {count}" for name, count in zip(FERPLUS_COLUMNS, votes) if count) or "none"
    if vote == "majority":
        kept = [count if count > 1 else 0 for count in votes]
        top = max(kept)
        if top == 0 or 2 * top <= sum(kept):
            raise _Bad(f"no emotion has more than half of the votes once single votes are dropped "
                       f"(votes: {said})")
        winner = FERPLUS_COLUMNS[kept.index(top)]
    else:
        top = max(votes)
        winners = [name for name, count in zip(FERPLUS_COLUMNS, votes) if count == top]
        if top == 0:
            raise _Bad("no votes")
        if len(winners) > 1:
            raise _Bad(f"no single most-voted emotion: {' and '.join(winners)} have {top} votes each "
                       f"(votes: {said})")
        winner = winners[0]
    if winner == "unknown":
        raise _Bad(f"the most votes say unknown (votes: {said})")
    if winner == "NF":
        raise _Bad(f"the most votes say not a face (NF) (votes: {said})")
    if winner == "contempt":
        _contempt_needs_8(f"the most-voted emotion (votes: {said})", num_classes)
    return MAFW_CLASSES.index(_canonical(winner))


def ferplus(root: str | Path, *, num_classes: int = 7, vote: str = "majority") -> Listing:
    """FER2013's images with the FERPlus labels (Barsoum, Zhang, Canton Ferrer, Zhang 2016, "Training
    deep networks for facial expression recognition with crowd-sourced label distribution"), 7 or 8
    classes.

    Layout (each file in ROOT, ROOT/data, ROOT/fer2013 or ROOT/FERPlus, any case)::

        fer2013.csv      emotion,pixels,Usage        pixels = 48 x 48 = 2304 space-separated integers
        fer2013new.csv   Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF

    The two files are paired row by row (FERPlus's own ``generate_training_data.py`` does the same);
    FER2013's ``emotion`` column is not used. Each sample is the 48 x 48 grey image of its pixels
    (``ClipEntry.image``, uint8 (48, 48)), ``source`` = ``<absolute fer2013.csv>#row=<its line>``,
    clip id = the FERPlus image name without extension (``fer0000123``).

    Label, from the ten votes per image (``vote``):

    * ``"majority"`` (default): the paper's majority voting as its authors' code does it (FERPlus's
      ``src/ferplus.py``, ``_process_data``, mode ``majority``): votes of 1 are dropped as outliers, then
      an emotion needs more than half of the remaining votes, else the image is skipped.
    * ``"plurality"``: the emotion with the most votes (a looser reading: more images, noisier
      labels); an image whose most votes are shared by two or more columns is skipped ("no single
      most-voted emotion").

    The vote columns neutral, happiness, surprise, sadness, anger, disgust, fear, contempt -> dferjax
    indices 2, 0, 4, 1, 3, 5, 6, 7. An image whose label would be unknown or NF (not a face) is skipped
    with that reason; contempt is a class with ``num_classes=8`` only (skipped, saying so, with the
    default 7).

    Splits from ``Usage``: Training -> "train"; PublicTest -> "test" (FERPlus's validation set
    FER2013Valid, the split most papers report on); PrivateTest -> "test_private" (FERPlus's
    FER2013Test), a split of its own so that a config chooses which to evaluate on.

    Skipped, naming the files and lines: rows FERPlus dropped (empty ``Image name``), rows only one of
    the files has, rows whose ``Usage`` differs between the files or is unknown, malformed rows, votes
    that are no non-negative integers, pixels that are not 2304 integers 0..255, a name listed twice,
    and the vote outcomes above.
    """
    expected = ("fer2013.csv (emotion,pixels,Usage) and FERPlus's fer2013new.csv in ROOT (or ROOT/data, "
                "ROOT/fer2013, ROOT/FERPlus)")
    root = _check_root(root, "ferplus", expected)
    _check_classes("ferplus", num_classes, (7, 8))
    if vote not in ("plurality", "majority"):
        raise ValueError(f"ferplus: vote must be 'plurality' or 'majority', got {vote!r}")
    fer_path, new_path = _fer_file(root, "fer2013.csv"), _fer_file(root, "fer2013new.csv")
    for name, path in (("fer2013.csv", fer_path), ("fer2013new.csv", new_path)):
        if path is None:
            raise FileNotFoundError(f"ferplus: {root / name} does not exist; expected {expected}")
    fer_rel, new_rel = _rel(fer_path, root), _rel(new_path, root)
    new_header, new_rows = _read_table(new_path)
    new_cols = _columns(new_header, ("Usage", "Image name") + FERPLUS_COLUMNS, new_path, "ferplus")
    new_rows = list(new_rows)                       # 36k short rows; fer2013.csv (300 MB) is streamed
    fer_header, fer_rows = _read_table(fer_path)
    fer_cols = _columns(fer_header, ("emotion", "pixels", "Usage"), fer_path, "ferplus")

    skipped: list[SkippedEntry] = []
    rows: dict[str, list[_ImageRow]] = defaultdict(list)
    for index, (fer, new) in enumerate(itertools.zip_longest(fer_rows, new_rows)):
        if fer is None:
            line, fields = new
            skipped.append(_row_skip(f"{new_rel} line {line}", new_path, line, fields[:2],
                                     f"{fer_rel} has no row to pair it with (data row {index + 1}; the files "
                                     "are paired row by row)", root))
            continue
        fer_line, fer_fields = fer
        source, row_id = f"{fer_path}#row={fer_line}", f"{fer_rel}:{fer_line}"
        if new is None:
            skipped.append(SkippedEntry(row_id, source, f"ferplus {fer_rel} line {fer_line}: {new_rel} has no "
                                        f"row to pair it with (data row {index + 1}; the files are paired row "
                                        "by row)"))
            continue
        new_line, new_fields = new
        where = f"{fer_rel} line {fer_line} / {new_rel} line {new_line}"
        if len(new_fields) <= max(new_cols) or len(fer_fields) <= max(fer_cols):
            short = new_rel if len(new_fields) <= max(new_cols) else fer_rel
            skipped.append(SkippedEntry(row_id, source, f"ferplus {where}: the row of {short} has too few "
                                        "fields"))
            continue
        usage, name = new_fields[new_cols[0]], new_fields[new_cols[1]]
        if not name:
            skipped.append(SkippedEntry(f"{new_rel}:{new_line}", source, f"ferplus {where}: FERPlus dropped "
                                        "this image (empty Image name)"))
            continue
        row = _ImageRow(where, source, _safe_id(Path(name).stem), "", None)
        fer_usage = fer_fields[fer_cols[2]]
        if _norm(fer_usage) != _norm(usage):
            row.problems.append(f"Usage differs: {fer_rel} says {fer_usage!r}, {new_rel} says {usage!r}")
        elif _norm(usage) not in _FER_SPLITS:
            row.problems.append(f"Usage {usage!r} is not Training, PublicTest or PrivateTest")
        else:
            row.split = _FER_SPLITS[_norm(usage)]
        raw_votes = [new_fields[c] for c in new_cols[2:]]
        if all(v.isdigit() for v in raw_votes):
            try:
                row.label = _ferplus_label([int(v) for v in raw_votes], vote, num_classes)
            except _Bad as bad:
                row.problems.append(str(bad))
        else:
            row.problems.append(f"votes {','.join(raw_votes)!r} are not non-negative integers")
        try:
            row.image = _fer_pixels(fer_fields[fer_cols[1]])
        except _Bad as bad:
            row.problems.append(str(bad))
        rows[row.clip_id.lower()].append(row)
    return _finish("ferplus", num_classes, _image_rows("ferplus", rows, num_classes, skipped), skipped)


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

ADAPTERS: dict[str, Callable[..., Listing]] = {
    "dfew": dfew,
    "ferv39k": ferv39k,
    "mafw": mafw,
    "afew": afew,
    "folder": folder,
    "csv": csv_labels,
    "rafdb": rafdb,
    "affectnet": affectnet,
    "ferplus": ferplus,
}


def list_clips(dataset: str, root: str | Path, **options) -> Listing:
    """List the labelled clips of ``dataset`` (a key of ADAPTERS) found under ``root``."""
    adapter = ADAPTERS.get(dataset.lower().strip())
    if adapter is None:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}")
    return adapter(root, **options)
