"""Tests of data_prep.adapters: each adapter on a miniature copy of its dataset's official layout.

The miniature layouts are built in tmp_path from symlinks to the real media in ../shared/testdata
(tests that need it skip when it is absent); split files, folder names and label codes follow the
datasets' releases. Each layout mixes good clips with every bad case the adapter must report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from data_prep import adapters as A
from dferjax.labels import BASIC_CLASSES, MAFW_CLASSES


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _videos(testdata: Path) -> list[Path]:
    return sorted((testdata / "videos").glob("*.mp4"))


def _images(testdata: Path) -> list[Path]:
    return sorted((testdata / "images").glob("*.jpg"))


def link(target: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def frames(testdata: Path, folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(_images(testdata)[:count]):
        link(image, folder / f"{folder.name}_{i:06d}.jpg")
    return folder


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def ids(entries) -> list[str]:
    return [e.clip_id for e in entries]


def by_id(entries) -> dict:
    return {e.clip_id: e for e in entries}


def check_listing(listing: A.Listing, candidates: int) -> None:
    """Counts add up, order is sorted, clip ids unique, sources absolute, labels in range."""
    assert len(listing.clips) + len(listing.skipped) == candidates
    assert ids(listing.clips) == sorted(ids(listing.clips))
    assert len(set(ids(listing.clips))) == len(listing.clips)
    assert listing.skipped == sorted(listing.skipped, key=lambda s: (s.clip_id, s.source, s.reason))
    for clip in listing.clips:
        assert Path(clip.source).is_absolute() and Path(clip.source).exists()
        assert 0 <= clip.label < len(listing.class_names)
        assert not clip.clip_id.startswith("/") and ".." not in clip.clip_id.split("/")
    for skip in listing.skipped:
        assert skip.reason and skip.clip_id


def reason(listing: A.Listing, clip_id: str) -> str:
    matches = [s.reason for s in listing.skipped if s.clip_id == clip_id]
    assert len(matches) == 1, (clip_id, listing.skipped)
    return matches[0]


# ------------------------------------------------------------------------------------------------
# Labels and splits (no media)
# ------------------------------------------------------------------------------------------------


def test_parse_label_names_synonyms_and_codes():
    for name, index in [("Happy", 0), ("HAPPINESS", 0), ("sadness", 1), ("Neutrality", 2), ("anger", 3),
                        ("Surprised", 4), ("disgusted", 5), ("Fearful", 6), (" fear ", 6)]:
        assert A.parse_label(name) == index, name
    assert [A.parse_label(str(k), codes=A.DFEW_CODES) for k in range(1, 8)] == list(range(7))
    assert [A.parse_label(str(k), 11, codes=A.MAFW_CODES) for k in range(1, 12)] == [3, 5, 6, 0, 2, 1, 4, 7, 8, 9, 10]
    assert A.parse_label("contempt", 11) == MAFW_CLASSES.index("contempt") == 7
    assert A.parse_label("Disappointed", 11) == 10
    assert A.parse_label("6", zero_based=True) == 6
    with pytest.raises(ValueError, match="outside the codes 1..7"):
        A.parse_label("8", codes=A.DFEW_CODES)
    with pytest.raises(ValueError, match="not one of the 7 classes"):
        A.parse_label("contempt")
    with pytest.raises(ValueError, match="not a known class"):
        A.parse_label("calm")
    with pytest.raises(ValueError, match="outside 0..6"):
        A.parse_label("7", zero_based=True)


def test_hash_split_is_sha256_of_the_clip_id():
    def reference(clip_id, fraction):
        value = int(hashlib.sha256(clip_id.encode()).hexdigest()[:16], 16) / 2**64
        return "test" if value < fraction else "train"

    names = [f"happy/clip{i}" for i in range(200)]
    assert [A.hash_split(n, 0.2) for n in names] == [reference(n, 0.2) for n in names]
    assert 20 <= sum(A.hash_split(n, 0.2) == "test" for n in names) <= 60
    assert {A.hash_split(n, 0.0) for n in names} == {"train"}
    assert {A.hash_split(n, 1.0) for n in names} == {"test"}


def test_split_file_reading_headers_separators_comments(tmp_path):
    path = write(tmp_path / "s.csv", "\ufeffvideo_name,label\n\n# comment\n1,2\n00003 , 4\n")
    assert A._read_rows(path) == [(4, ["1", "2"]), (5, ["00003", "4"])]
    path = write(tmp_path / "t.txt", "00001.mp4 happiness\n00002.mp4\t8\n")
    assert A._read_rows(path) == [(1, ["00001.mp4", "happiness"]), (2, ["00002.mp4", "8"])]
    # a first row with a class name or a number is data, not a header
    path = write(tmp_path / "u.csv", "clip,happy\n")
    assert A._read_rows(path) == [(1, ["clip", "happy"])]


def test_unknown_dataset_and_bad_roots(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*dfew"):
        A.list_clips("nope", tmp_path)
    assert set(A.ADAPTERS) == {"dfew", "ferv39k", "mafw", "afew", "folder", "csv", "rafdb", "affectnet", "ferplus"}
    missing = tmp_path / "not_there"
    for name in A.ADAPTERS:
        with pytest.raises(FileNotFoundError, match="not_there.*does not exist; expected"):
            A.list_clips(name, missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    expectations = {"dfew": "EmoLabel_DataSplit", "ferv39k": "4_setups", "mafw": "Train & Test Set",
                    "afew": "no Train/ or Val/", "folder": "no sub-folders", "csv": "labels.csv"}
    for name, text in expectations.items():
        with pytest.raises((FileNotFoundError, ValueError)) as info:
            A.list_clips(name, empty)
        assert text in str(info.value) and str(empty) in str(info.value), (name, info.value)
    # split files present but no clip folder
    write(empty / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", "video_name,label\n1,1\n")
    with pytest.raises(FileNotFoundError, match="Clip/original"):
        A.list_clips("dfew", empty)
    with pytest.raises(ValueError, match="test_fraction"):
        A.list_clips("folder", empty, test_fraction=1.5)


# ------------------------------------------------------------------------------------------------
# DFEW
# ------------------------------------------------------------------------------------------------


def build_dfew(testdata: Path, root: Path) -> Path:
    clips = root / "Clip" / "clip_224x224"
    for n in (1, 2, 3, 4, 6, 7, 8, 9, 11):
        frames(testdata, clips / f"{n:05d}")
    (clips / "00005").mkdir()  # empty frame folder
    write(clips / "readme.txt", "not a clip")  # stray file
    splits = root / "EmoLabel_DataSplit"
    test, train = splits / "test(single-labeled)", splits / "train(single-labeled)"
    write(test / "set_1.csv", "video_name,label\n1,1\n00002,4\n")
    write(test / "set_2.csv", "video_name,label\n3,7\n7,2\n")
    write(test / "set_3.csv", "video_name,label\n7,2\n4,5\n10,3\n5,6\n")
    write(test / "set_4.csv", "video_name,label\n8,2\n")
    write(test / "set_5.csv", "video_name,label\n9,9\nabc,3\n11\n")
    write(train / "set_1.csv", "video_name,label\n3,7\n11,1\n")
    write(train / "set_2.csv", "video_name,label\n1,1\n8,3\n")
    return root


def test_dfew_frames(testdata, tmp_path):
    root = build_dfew(testdata, tmp_path / "DFEW")
    listing = A.list_clips("dfew", root)
    assert listing.dataset == "dfew" and listing.class_names == BASIC_CLASSES
    # 11 clip ids + the stray file + 2 malformed rows
    check_listing(listing, 14)
    got = {c.clip_id: (c.label, c.split) for c in listing.clips}
    assert got == {"00001": (0, "fold1"), "00002": (3, "fold1"), "00003": (6, "fold2"), "00004": (4, "fold3")}
    assert by_id(listing.clips)["00001"].source == str(root.resolve() / "Clip/clip_224x224/00001")
    assert all(c.scene == "" for c in listing.clips)
    assert "contains no frame images" in reason(listing, "00005")
    assert "00006" in reason(listing, "00006") and "not in any split file" in reason(listing, "00006")
    assert "several sets" in reason(listing, "00007") and "set_2.csv line 3" in reason(listing, "00007") \
        and "set_3.csv line 2" in reason(listing, "00007")
    assert "different labels" in reason(listing, "00008") and "train(single-labeled)/set_2.csv line 3" in reason(listing, "00008")
    assert "set_5.csv line 2" in reason(listing, "00009") and "outside the codes 1..7" in reason(listing, "00009")
    assert "set_3.csv line 4" in reason(listing, "00010") and "does not exist" in reason(listing, "00010")
    assert "no test split file" in reason(listing, "00011")
    assert "readme.txt" in reason(listing, "readme.txt")
    assert "set_5.csv line 3" in reason(listing, "EmoLabel_DataSplit/test(single-labeled)/set_5.csv:3") and "not an integer DFEW clip id" in reason(listing, "EmoLabel_DataSplit/test(single-labeled)/set_5.csv:3")
    assert "expected 2 fields" in reason(listing, "EmoLabel_DataSplit/test(single-labeled)/set_5.csv:4")
    assert A.list_clips("dfew", root) == listing  # deterministic


def test_dfew_videos(testdata, tmp_path):
    root = tmp_path / "DFEW"
    videos = _videos(testdata)
    link(videos[0], root / "Clip/original/00001.mp4")
    link(videos[1], root / "Clip/original/part_2/2.mp4")  # unpadded name, nested folder
    write(root / "Clip/original/00003.mp4", "")  # empty video
    write(root / "EmoLabel_DataSplit/test(single-labeled)/set_1.csv", "1,3\n")
    write(root / "EmoLabel_DataSplit/test(single-labeled)/set_4.csv", "video_name,label\n02,6\n3,1\n")
    listing = A.list_clips("dfew", root)  # no clip_224x224 -> videos
    check_listing(listing, 3)
    assert [(c.clip_id, c.label, c.split) for c in listing.clips] == [("00001", 2, "fold1"), ("00002", 5, "fold4")]
    assert listing.clips[1].source == str(root.resolve() / "Clip/original/part_2/2.mp4")
    assert "empty (0 bytes)" in reason(listing, "00003")
    frames(testdata, root / "Clip/clip_224x224/00001")
    assert ids(A.list_clips("dfew", root, source="videos").clips) == ["00001", "00002"]
    framed = A.list_clips("dfew", root)  # frames folder now exists -> default
    assert ids(framed.clips) == ["00001"] and framed.clips[0].source.endswith("clip_224x224/00001")
    with pytest.raises(ValueError, match="source"):
        A.list_clips("dfew", root, source="audio")
    write(root / "EmoLabel_DataSplit/train(single-labeled)/set_1.csv", "video_name,label\n00001,3\n")
    clash = A.list_clips("dfew", root, source="videos")
    assert "test and the train file of set 1" in reason(clash, "00001") and ids(clash.clips) == ["00002"]


# ------------------------------------------------------------------------------------------------
# FERV39k
# ------------------------------------------------------------------------------------------------


def test_ferv39k(testdata, tmp_path):
    root = tmp_path / "FERV39k"
    clips = root / "2_ClipsforFaceCrop"
    for rel in ("DailyLife/Angry/0001", "DailyLife/Happy/0002", "Action/Surprise/0003", "Action/Fear/0004",
                "Action/Happy/0005", "Action/Calm/0006"):
        frames(testdata, clips / rel)
    (clips / "Action/Sad/0007").mkdir(parents=True)
    setups = root / "4_setups/All_scenes"
    write(setups / "train_All.csv", "path label\nDailyLife/Angry/0001 0\n2_ClipsforFaceCrop/Action/Surprise/3\n"
                                    "Action/Fear/0004\nAction/Calm/0006\nAction/Angry/0099 0\n")
    write(setups / "test_All.csv", "DailyLife/Happy/0002,3\nAction/Fear/0004,2\nAction/Sad/0007,5\n"
                                   "DailyLife/Angry/0001/extra,0\n")
    listing = A.list_clips("ferv39k", root)
    check_listing(listing, 9)  # 8 clip paths + 1 malformed row
    got = {c.clip_id: (c.label, c.split, c.scene) for c in listing.clips}
    assert got == {"Action/Surprise/0003": (4, "train", "Action"), "DailyLife/Angry/0001": (3, "train", "DailyLife"),
                   "DailyLife/Happy/0002": (0, "test", "DailyLife")}
    assert by_id(listing.clips)["Action/Surprise/0003"].source == str(clips.resolve() / "Action/Surprise/0003")
    assert "both the train and the test" in reason(listing, "Action/Fear/0004")
    assert "not in any split file" in reason(listing, "Action/Happy/0005")
    assert "'Calm'" in reason(listing, "Action/Calm/0006") and "not a known class" in reason(listing, "Action/Calm/0006")
    assert "contains no frame images" in reason(listing, "Action/Sad/0007")
    assert "train_All.csv line 6" in reason(listing, "Action/Angry/0099") and "does not exist" in reason(listing, "Action/Angry/0099")
    assert "test_All.csv line 4" in reason(listing, "4_setups/All_scenes/test_All.csv:4")
    assert A.list_clips("ferv39k", root) == listing


# ------------------------------------------------------------------------------------------------
# MAFW
# ------------------------------------------------------------------------------------------------


def test_mafw(testdata, tmp_path):
    root = tmp_path / "MAFW"
    videos = _videos(testdata)
    for n in range(1, 7):
        link(videos[n % len(videos)], root / f"data/clips/{n:05d}.mp4")
    write(root / "data/clips/notes.txt", "x")
    single = root / "Train & Test Set/single/no_caption"
    write(single / "set_1/test.txt", "00001.mp4 happiness\n00002.mp4 8\n")
    write(single / "set_1/train.txt", "00003.mp4 anxiety\n")
    write(single / "set_2/test.csv", "3.mp4,Anxious\n00004.mp4,12\n")
    write(single / "set_3/test.txt", "00005.mp4 Disappointment\n00009.mp4 1\n")
    listing = A.list_clips("mafw", root)
    assert listing.class_names == MAFW_CLASSES
    check_listing(listing, 8)  # 7 clip names + notes.txt
    got = {c.clip_id: (c.label, c.split) for c in listing.clips}
    assert got == {"00001": (0, "fold1"), "00002": (7, "fold1"), "00003": (8, "fold2"), "00005": (10, "fold3")}
    assert "set_2/test.csv line 2" in reason(listing, "00004") and "1..11" in reason(listing, "00004")
    assert "not in any split file" in reason(listing, "00006")
    assert "set_3/test.txt line 2" in reason(listing, "00009") and "data/clips/00009.mp4 does not exist" in reason(listing, "00009")
    assert "notes.txt" in reason(listing, "notes.txt")
    seven = A.list_clips("mafw", root, num_classes=7)
    assert ids(seven.clips) == ["00001"] and "not one of the 7 classes" in reason(seven, "00002")
    check_listing(seven, 8)


# ------------------------------------------------------------------------------------------------
# AFEW
# ------------------------------------------------------------------------------------------------


def test_afew(testdata, tmp_path):
    root = tmp_path / "AFEW"
    videos = _videos(testdata)
    link(videos[0], root / "Train/Angry/000046280.avi")
    link(videos[1], root / "Train/Happy/000146454.avi")
    link(videos[2], root / "Val/Sad/000149120.avi")
    link(videos[3], root / "Val/Surprise/000201.avi")
    link(videos[4], root / "Train/Confused/000300.avi")
    write(root / "Val/Fear/readme.txt", "x")
    link(videos[0], root / "Train/stray.avi")
    link(videos[0], root / "Test/000999.avi")  # unlabelled test set: not read
    listing = A.list_clips("afew", root)
    check_listing(listing, 7)
    got = {c.clip_id: (c.label, c.split) for c in listing.clips}
    assert got == {"Train/Angry/000046280": (3, "train"), "Train/Happy/000146454": (0, "train"),
                   "Val/Sad/000149120": (1, "test"), "Val/Surprise/000201": (4, "test")}
    assert "'Confused'" in reason(listing, "Train/Confused/000300")
    assert "readme.txt" in reason(listing, "Val/Fear/readme") and "not a video" in reason(listing, "Val/Fear/readme")
    assert "not inside a label folder" in reason(listing, "Train/stray.avi")


# ------------------------------------------------------------------------------------------------
# Generic folder tree
# ------------------------------------------------------------------------------------------------


def test_folder_without_split_folders(testdata, tmp_path):
    root = tmp_path / "tree"
    videos = _videos(testdata)
    link(videos[0], root / "Happiness/v1.mp4")
    link(videos[1], root / "ANGER/v2.mp4")
    frames(testdata, root / "sad/f1")
    link(videos[2], root / "Fearful/v3.mp4")
    link(videos[3], root / "Fearful/v3.avi")  # the same stem as v3.mp4: both kept, ids with extensions
    link(videos[4], root / "Calm/v4.mp4")
    write(root / "sad/notes.txt", "x")
    (root / "sad/empty").mkdir()
    link(videos[0], root / "top.mp4")
    listing = A.list_clips("folder", root)
    check_listing(listing, 9)
    # Distinct files keep distinct ids (issue: nothing dropped); ids are unchanged where stems differ.
    assert ids(listing.clips) == ["ANGER/v2", "Fearful/v3.avi", "Fearful/v3.mp4", "Happiness/v1", "sad/f1"]
    assert [c.label for c in listing.clips] == [3, 6, 6, 0, 1]
    assert [c.split for c in listing.clips] == [A.hash_split(c.clip_id, 0.2) for c in listing.clips]
    assert by_id(listing.clips)["Fearful/v3.avi"].source.endswith("Fearful/v3.avi")
    assert by_id(listing.clips)["Fearful/v3.mp4"].source.endswith("Fearful/v3.mp4")
    assert "'Calm'" in reason(listing, "Calm/v4")
    assert "sad/notes.txt" in reason(listing, "sad/notes") and "not a video file" in reason(listing, "sad/notes")
    assert "contains no frame images" in reason(listing, "sad/empty")
    assert "not inside a label folder" in reason(listing, "top.mp4")
    assert {c.split for c in A.list_clips("folder", root, test_fraction=1.0).clips} == {"test"}
    assert {c.split for c in A.list_clips("folder", root, test_fraction=0.0).clips} == {"train"}
    assert A.list_clips("folder", root) == listing


def test_folder_with_split_folders(testdata, tmp_path):
    root = tmp_path / "tree"
    videos = _videos(testdata)
    link(videos[0], root / "train/happy/v1.mp4")
    frames(testdata, root / "train/Neutral/f2")
    link(videos[1], root / "Test/Disgusted/v2.mp4")
    link(videos[2], root / "test/contempt/v3.mp4")
    write(root / "README.md", "x")
    listing = A.list_clips("folder", root)
    check_listing(listing, 5)
    got = {c.clip_id: (c.label, c.split) for c in listing.clips}
    assert got == {"Test/Disgusted/v2": (5, "test"), "train/Neutral/f2": (2, "train"), "train/happy/v1": (0, "train")}
    assert "not one of the 7 classes" in reason(listing, "test/contempt/v3")
    assert "README.md" in reason(listing, "README.md")
    eleven = A.list_clips("folder", root, num_classes=11)
    assert by_id(eleven.clips)["test/contempt/v3"].label == 7 and eleven.class_names == MAFW_CLASSES


# ------------------------------------------------------------------------------------------------
# Label file
# ------------------------------------------------------------------------------------------------


def test_csv(testdata, tmp_path):
    root = tmp_path / "data"
    videos = _videos(testdata)
    link(videos[0], root / "videos/a.mp4")
    link(videos[1], root / "videos/b.mp4")
    link(videos[2], root / "videos/d.mp4")
    link(videos[3], root / "videos/e.mp4")
    frames(testdata, root / "frames/c")
    write(root / "videos/f.txt", "x")
    outside = videos[4]
    write(root / "labels.csv", "\n".join([
        "path,label,split",                # row 1: header
        "videos/a.mp4,happy,train",         # 2
        "videos/b.mp4,3",                   # 3: angry, hash split
        "frames/c,Surprised,test",          # 4
        f"{outside},sadness,val",           # 5: absolute path outside root
        "videos/missing.mp4,happy",         # 6
        "videos/a.mp4,sad",                 # 7: duplicate
        "videos/d.mp4,7",                   # 8: bad index
        "videos/e.mp4,happy,holdout",       # 9: bad split
        "onlyonefield",                     # 10
        "videos/f.txt,happy",               # 11
        "videos/e.mp4 fear fold3",          # 12: whitespace separated
    ]) + "\n")
    listing = A.list_clips("csv", root)
    check_listing(listing, 11)
    outside_id = A._safe_id(outside.with_suffix("").as_posix())
    got = {c.clip_id: (c.label, c.split) for c in listing.clips}
    assert got == {"videos/a": (0, "train"), "videos/b": (3, A.hash_split("videos/b", 0.2)),
                   "frames/c": (4, "test"), outside_id: (1, "test"), "videos/e": (6, "fold3")}
    assert by_id(listing.clips)[outside_id].source == str(outside)
    skipped = {s.source.rsplit(":", 1)[-1]: s.reason for s in listing.skipped}
    assert set(skipped) == {"6", "7", "8", "9", "10", "11"}
    for row, text in [("6", "does not exist"), ("7", "already listed in labels.csv row 2"), ("8", "outside 0..6"),
                      ("9", "'holdout'"), ("10", "expected 'path,label[,split]'"), ("11", "not a video file")]:
        assert f"labels.csv row {row}" in skipped[row] and text in skipped[row], (row, skipped[row])
    other = write(tmp_path / "elsewhere.txt", "videos/a.mp4 happiness\n")
    assert [(c.clip_id, c.label) for c in A.list_clips("csv", root, csv=other).clips] == [("videos/a", 0)]
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        A.list_clips("csv", root, csv="nope.csv")


def test_clip_ids_are_one_to_one_with_file_names_in_any_script(testdata, tmp_path):
    """cases/unicode_ids, generated: two Japanese names, 'a b' beside 'a_b', a name with '%' and
    parentheses: every file is listed under its own id, none is dropped."""
    root = tmp_path / "tree"
    videos = _videos(testdata)
    names = ["happy/笑顔.mp4", "happy/喜び.mp4", "sad/a b.mp4", "sad/a_b.mp4", "sad/100%.mp4", "sad/my clip (1).mp4",
             "angry/Гнев.mp4"]
    for k, name in enumerate(names):
        link(videos[k % len(videos)], root / name)
    listing = A.list_clips("folder", root)
    assert listing.skipped == []
    assert ids(listing.clips) == sorted(["happy/笑顔", "happy/喜び", "sad/a%20b", "sad/a_b", "sad/100%25",
                                         "sad/my%20clip%20%281%29", "angry/Гнев"])
    assert len({c.source for c in listing.clips}) == len(names)
    for raw in ("a b", "a_b", "a%20b", "a/b", "笑顔", "x.y-z"):         # one-to-one on these
        assert sum(A._safe_id(raw) == A._safe_id(other) for other in ("a b", "a_b", "a%20b", "a/b", "笑顔", "x.y-z")) == 1
