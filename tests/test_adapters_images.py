"""Tests of the still-image adapters (RAF-DB, AffectNet, FERPlus) and of images in the folder and csv adapters.

Each test writes a miniature copy of a data set's official layout in tmp_path: tiny images (cv2.imwrite), label
files, numpy annotation files, FER2013's pixel csv. Label codes are checked against the tables below, written
from the data sets' own documentation, not against the adapters' mapping. The end-to-end build uses real faces
from ../shared/testdata (skipped where it is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import adapters as A
from data_prep import build as command
from dferjax.data import records
from dferjax.data.dataset import INFO_FILE, MANIFEST_FILE
from dferjax.labels import BASIC_CLASSES, CONTEMPT_CLASSES

# dferjax indices: 0 happy, 1 sad, 2 neutral, 3 angry, 4 surprise, 5 disgust, 6 fear, 7 contempt.
# RAF-DB basic, EmoLabel/list_patition_label.txt: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness,
# 6 anger, 7 neutral.
RAFDB_TO_DFERJAX = {1: 4, 2: 6, 3: 5, 4: 0, 5: 1, 6: 3, 7: 2}
# AffectNet expression: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt
# (8 none, 9 uncertain, 10 no-face are no class).
AFFECTNET_TO_DFERJAX = {0: 2, 1: 0, 2: 1, 3: 4, 4: 6, 5: 5, 6: 3, 7: 7}
# FERPlus vote columns, in fer2013new.csv's order.
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF"]
FERPLUS_TO_DFERJAX = {"neutral": 2, "happiness": 0, "surprise": 4, "sadness": 1, "anger": 3, "disgust": 5,
                      "fear": 6, "contempt": 7}


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def image(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check_listing(listing: A.Listing, candidates: int) -> None:
    """Counts add up, order is sorted, ids unique, sources absolute, labels in range, reasons given."""
    assert len(listing.clips) + len(listing.skipped) == candidates, (listing.clips, listing.skipped)
    ids = [c.clip_id for c in listing.clips]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert listing.skipped == sorted(listing.skipped, key=lambda s: (s.clip_id, s.source, s.reason))
    for clip in listing.clips:
        path = Path(clip.source.split("#row=")[0])
        assert path.is_absolute() and path.exists()
        assert (clip.image is None) == ("#row=" not in clip.source)
        assert 0 <= clip.label < len(listing.class_names)
    assert all(s.reason and s.clip_id for s in listing.skipped)


def reason(listing: A.Listing, clip_id: str) -> str:
    matches = [s.reason for s in listing.skipped if s.clip_id == clip_id]
    assert len(matches) == 1, (clip_id, listing.skipped)
    return matches[0]


def got(listing: A.Listing) -> dict[str, tuple[int, str]]:
    return {c.clip_id: (c.label, c.split) for c in listing.clips}


def test_registered_and_bad_roots(tmp_path):
    assert {"rafdb", "affectnet", "ferplus"} <= set(A.ADAPTERS)
    for name in ("rafdb", "affectnet", "ferplus"):
        with pytest.raises(FileNotFoundError, match="not_there.*does not exist; expected"):
            A.list_clips(name, tmp_path / "not_there")
    empty = tmp_path / "empty"
    empty.mkdir()
    for name, text in {"rafdb": "list_patition_label.txt", "affectnet": "neither train_set",
                       "ferplus": "fer2013.csv"}.items():
        with pytest.raises(FileNotFoundError) as info:
            A.list_clips(name, empty)
        assert text in str(info.value) and str(empty) in str(info.value), (name, info.value)
    with pytest.raises(ValueError, match="num_classes must be 7 or 8"):
        A.list_clips("affectnet", empty, num_classes=11)
    with pytest.raises(ValueError, match="num_classes must be 7 or 8"):
        A.list_clips("ferplus", empty, num_classes=11)


# ------------------------------------------------------------------------------------------------
# RAF-DB
# ------------------------------------------------------------------------------------------------


def build_rafdb(root: Path, label_name: str = "list_patition_label.txt") -> Path:
    aligned, original = root / "Image/aligned", root / "Image/original"
    lines = []
    for code in range(1, 8):                         # one image per code
        lines.append(f"train_{code:05d}.jpg {code}")
        image(aligned / f"train_{code:05d}_aligned.jpg", 10 * code)
        image(original / f"train_{code:05d}.jpg", 10 * code, size=16)
    lines += ["test_0001.jpg 4",                   # 8: listed, test split
              "test_0002.jpg 8",                   # 9: unknown code
              "test_0003.jpg 5",                   # 10: image missing
              "train_00008.jpg 2",                 # 11, 12: twice with one label -> kept once
              "train_00008.jpg 2",
              "train_00009.jpg 1",                 # 13, 14: twice with different labels -> both skipped
              "train_00009.jpg 3",
              "just_one_field",                    # 15: malformed
              "val_0001.jpg 3",                    # 16: no train_/test_ prefix
              "test_0004.jpg 6"]                   # 17: empty image file
    for name in ("test_0001", "test_0002", "train_00008", "train_00009"):
        image(aligned / f"{name}_aligned.jpg")
    image(original / "test_0001.jpg")
    write(aligned / "test_0004_aligned.jpg", "")
    image(aligned / "train_00099_aligned.jpg")      # on disk, listed nowhere
    write(aligned / "notes.txt", "x")               # not an image
    write(root / "EmoLabel" / label_name, "\n".join(lines) + "\n")
    return root


def test_rafdb_aligned(tmp_path):
    root = build_rafdb(tmp_path / "RAF-DB")
    listing = A.list_clips("rafdb", root)
    assert listing.dataset == "rafdb" and listing.class_names == BASIC_CLASSES
    check_listing(listing, 17 + 2)                  # 17 lines + the unlisted image + notes.txt
    expected = {f"train_{code:05d}": (RAFDB_TO_DFERJAX[code], "train") for code in range(1, 8)}
    expected |= {"test_0001": (RAFDB_TO_DFERJAX[4], "test"), "train_00008": (RAFDB_TO_DFERJAX[2], "train")}
    assert got(listing) == expected
    aligned = root.resolve() / "Image/aligned"
    assert {c.clip_id: c.source for c in listing.clips}["train_00003"] == str(aligned / "train_00003_aligned.jpg")
    assert all(c.image is None and c.face_box is None for c in listing.clips)
    label_file = "EmoLabel/list_patition_label.txt"
    assert f"{label_file} line 9" in reason(listing, "test_0002") and "unknown label code" in reason(listing, "test_0002")
    assert "Image/aligned/test_0003_aligned.jpg does not exist" in reason(listing, "test_0003")
    assert "listed again" in reason(listing, "train_00008") and f"{label_file} line 11" in reason(listing, "train_00008")
    dup = [s.reason for s in listing.skipped if s.clip_id == "train_00009"]
    assert len(dup) == 2 and all("different labels" in r and "line 13" in r and "line 14" in r for r in dup)
    assert "expected '<name>.jpg <label 1..7>'" in reason(listing, f"{label_file}:15")
    assert "does not start with train_ or test_" in reason(listing, f"{label_file}:16")
    assert "empty (0 bytes)" in reason(listing, "test_0004")
    assert "not listed in" in reason(listing, "train_00099") and "train_00099_aligned.jpg" in reason(listing, "train_00099")
    assert "not an image file" in reason(listing, "notes.txt")
    assert A.list_clips("rafdb", root) == listing


def test_rafdb_original_images_and_corrected_file_name(tmp_path):
    root = build_rafdb(tmp_path / "RAF-DB", label_name="list_partition_label.txt")
    listing = A.list_clips("rafdb", root, images="original")
    check_listing(listing, 17)                      # Image/original holds only listed images
    assert got(listing)["test_0001"] == (RAFDB_TO_DFERJAX[4], "test")
    assert {c.clip_id: c.source for c in listing.clips}["train_00001"] == str(root.resolve() / "Image/original/train_00001.jpg")
    assert "Image/original/train_00008.jpg does not exist" in [s.reason for s in listing.skipped if s.clip_id == "train_00008"][0]
    with pytest.raises(ValueError, match="aligned' or 'original'"):
        A.list_clips("rafdb", root, images="cropped")


# ------------------------------------------------------------------------------------------------
# AffectNet
# ------------------------------------------------------------------------------------------------


def test_affectnet_train_set_val_set_layout(tmp_path):
    root = tmp_path / "AffectNet"
    train_images, train_notes = root / "train_set/images", root / "train_set/annotations"
    val_notes = root / "val_set/annotations"
    train_notes.mkdir(parents=True)
    val_notes.mkdir(parents=True)
    for code in range(11):                          # image <code>.jpg has expression <code>
        image(train_images / f"{code}.jpg")
        value = np.array(str(code)) if code % 2 else np.array(code)    # both a string and a number
        np.save(train_notes / f"{code}_exp.npy", value)
        np.save(train_notes / f"{code}_aro.npy", np.array("0.5"))     # other annotations: not read
    image(train_images / "20.jpg")                  # no annotation
    np.save(train_notes / "21_exp.npy", np.array("1"))                # no image
    image(train_images / "22.jpg")
    write(train_notes / "22_exp.npy", "not numpy")  # unreadable
    image(train_images / "23.jpg")
    np.save(train_notes / "23_exp.npy", np.array(["1", "2"]))         # not one value
    write(train_images / "readme.txt", "x")
    image(root / "val_set/images/0.jpg")
    np.save(val_notes / "0_exp.npy", np.array("6"))

    listing = A.list_clips("affectnet", root)
    assert listing.class_names == BASIC_CLASSES and A.affectnet_layout(root) == "sets"
    check_listing(listing, 11 + 4 + 1 + 1)          # 11 codes, 4 bad ids, readme.txt, val_set/0
    expected = {f"train_set/{code}": (AFFECTNET_TO_DFERJAX[code], "train") for code in range(7)}
    expected["val_set/0"] = (AFFECTNET_TO_DFERJAX[6], "test")
    assert got(listing) == expected
    assert {c.clip_id: c.source for c in listing.clips}["val_set/0"] == str(root.resolve() / "val_set/images/0.jpg")
    assert "num_classes=8" in reason(listing, "train_set/7") and "contempt" in reason(listing, "train_set/7")
    assert "expression 8 (none) is not a class" in reason(listing, "train_set/8")
    assert "expression 9 (uncertain) is not a class" in reason(listing, "train_set/9")
    assert "expression 10 (no-face) is not a class" in reason(listing, "train_set/10")
    assert "has no annotation" in reason(listing, "train_set/20") and "20_exp.npy" in reason(listing, "train_set/20")
    assert "has no image" in reason(listing, "train_set/21")
    assert "cannot be read as a numpy file" in reason(listing, "train_set/22")
    assert "not one expression code" in reason(listing, "train_set/23")
    assert "not an image file" in reason(listing, "train_set/readme.txt")

    eight = A.list_clips("affectnet", root, num_classes=8)
    assert eight.class_names == CONTEMPT_CLASSES and got(eight)["train_set/7"] == (7, "train")
    check_listing(eight, 17)


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                    "valence,arousal\n")
LANDMARKS = ";".join(["10.5"] * 136)


def test_affectnet_csv_layout(tmp_path):
    root = tmp_path / "AffectNet"
    rows = []
    for code in range(11):
        image(root / f"Manually_Annotated_Images/{code + 1}/img{code}.jpg", size=32)
        rows.append(f"{code + 1}/img{code}.jpg,{code},{2 * code},20,10,{LANDMARKS},{code},0.1,-0.2")
    rows.append(f"50/missing.jpg,1,1,20,20,{LANDMARKS},1,0,0")          # image missing
    image(root / "Manually_Annotated_Images/51/badbox.jpg")
    rows.append(f"51/badbox.jpg,1,1,0,20,{LANDMARKS},1,0,0")           # zero width
    rows.append("52/short.jpg,1,1")                                     # too few columns
    rows.append(f"1/img0.jpg,0,0,20,10,{LANDMARKS},0,0.1,-0.2")         # listed again
    write(root / "Manually_Annotated_file_lists/training.csv", AFFECTNET_HEADER + "\n".join(rows) + "\n")
    image(root / "60/val.png", size=32)                                 # found at ROOT/<subDirectory_filePath>
    write(root / "validation.csv", AFFECTNET_HEADER + f"60/val.png,3.5,4,10,12,{LANDMARKS},3,0,0\n")

    assert A.affectnet_layout(root) == "csv"
    listing = A.list_clips("affectnet", root)
    check_listing(listing, 16)                      # 15 training rows + 1 validation row
    expected = {f"{code + 1}/img{code}": (AFFECTNET_TO_DFERJAX[code], "train") for code in range(7)}
    expected["60/val"] = (AFFECTNET_TO_DFERJAX[3], "test")
    assert got(listing) == expected
    clips = {c.clip_id: c for c in listing.clips}
    assert clips["3/img2"].face_box == (2.0, 4.0, 22.0, 14.0)          # (x, y, x + w, y + h)
    assert clips["60/val"].face_box == (3.5, 4.0, 13.5, 16.0)
    assert clips["60/val"].source == str(root.resolve() / "60/val.png")
    assert clips["1/img0"].source == str(root.resolve() / "Manually_Annotated_Images/1/img0.jpg")
    lists = "Manually_Annotated_file_lists/training.csv"
    assert "contempt" in reason(listing, "8/img7") and "num_classes=8" in reason(listing, "8/img7")
    assert "expression 9 (uncertain) is not a class" in reason(listing, "10/img9")
    assert "expression 10 (no-face)" in reason(listing, "11/img10")
    assert "Manually_Annotated_Images/50/missing.jpg does not exist" in reason(listing, "50/missing")
    assert "is not a box" in reason(listing, "51/badbox")
    assert f"{lists} line 15" in reason(listing, f"{lists}:15")
    assert "listed again" in reason(listing, "1/img0") and f"{lists} line 2" in reason(listing, "1/img0")
    eight = A.list_clips("affectnet", root, num_classes=8)
    assert got(eight)["8/img7"] == (7, "train")
    with pytest.raises(FileNotFoundError, match="layout='sets'"):
        A.list_clips("affectnet", root, layout="sets")


# ------------------------------------------------------------------------------------------------
# FERPlus
# ------------------------------------------------------------------------------------------------


def votes(**counts: int) -> str:
    return ",".join(str(counts.get(name, 0)) for name in FERPLUS_COLUMNS)


# (Usage in fer2013.csv, Usage in fer2013new.csv, Image name, votes, pixel override or None)
FERPLUS_ROWS = [
    ("Training", "Training", "fer0000000.png", votes(neutral=9, sadness=1), None),
    ("Training", "Training", "fer0000001.png", votes(happiness=10), None),
    ("Training", "Training", "fer0000002.png", votes(surprise=6, fear=4), None),
    ("Training", "Training", "fer0000003.png", votes(sadness=7, neutral=3), None),
    ("Training", "Training", "fer0000004.png", votes(anger=8, disgust=2), None),
    ("Training", "Training", "fer0000005.png", votes(disgust=5, anger=4, neutral=1), None),
    ("Training", "Training", "fer0000006.png", votes(fear=6, surprise=4), None),
    ("Training", "Training", "fer0000007.png", votes(contempt=6, neutral=4), None),
    ("Training", "Training", "fer0000008.png", votes(unknown=6, neutral=4), None),
    ("Training", "Training", "fer0000009.png", votes(NF=10), None),
    ("Training", "Training", "fer0000010.png", votes(neutral=4, happiness=4, sadness=2), None),   # a tie
    ("Training", "Training", "", votes(NF=10), None),                                             # dropped
    ("Training", "Training", "fer0000011.png", votes(happiness=10), "1 " * 2303),                # 2303 values
    ("Training", "Training", "fer0000012.png", votes(happiness=10), "256 " + "0 " * 2303),       # > 255
    ("PublicTest", "PublicTest", "fer0000013.png", votes(happiness=8, neutral=2), None),
    ("PrivateTest", "PrivateTest", "fer0000014.png", votes(sadness=10), None),
    ("Training", "PublicTest", "fer0000015.png", votes(happiness=10), None),                      # Usage differs
    # plurality: neutral; FERPlus majority: single votes dropped, 4 of 9 is no majority
    ("Training", "Training", "fer0000016.png", votes(neutral=4, sadness=1, anger=3, disgust=2), None),
]


def build_ferplus(root: Path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (48, 48)) for _ in range(len(FERPLUS_ROWS) + 1)]
    fer = ["emotion,pixels,Usage"]
    new = ["Usage,Image name," + ",".join(FERPLUS_COLUMNS)]
    for k, (usage, new_usage, name, vote, override) in enumerate(FERPLUS_ROWS):
        fer.append(f"{k % 7},{override or ' '.join(map(str, pixels[k].ravel()))},{usage}")
        new.append(f"{new_usage},{name},{vote}")
    fer.append(f"3,{' '.join(map(str, pixels[-1].ravel()))},PrivateTest")   # no FERPlus row for it
    fer_path = write(root / "fer2013.csv", "\n".join(fer) + "\n")
    write(root / "data/fer2013new.csv", "\n".join(new) + "\n")             # FERPlus's file in ROOT/data
    return fer_path, pixels


def test_ferplus(tmp_path):
    fer_path, pixels = build_ferplus(tmp_path / "FERPlus")
    listing = A.list_clips("ferplus", tmp_path / "FERPlus", vote="plurality")
    assert listing.class_names == BASIC_CLASSES
    check_listing(listing, len(FERPLUS_ROWS) + 1)
    winners = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    expected = {f"fer{k:07d}": (FERPLUS_TO_DFERJAX[name], "train") for k, name in enumerate(winners)}
    expected |= {"fer0000013": (FERPLUS_TO_DFERJAX["happiness"], "test"),
                 "fer0000014": (FERPLUS_TO_DFERJAX["sadness"], "test_private"),
                 "fer0000016": (FERPLUS_TO_DFERJAX["neutral"], "train")}
    assert got(listing) == expected
    clips = {c.clip_id: c for c in listing.clips}
    fer_abs = fer_path.resolve()
    for clip_id, row in [("fer0000000", 0), ("fer0000005", 5), ("fer0000014", 15)]:   # the row in fer2013.csv
        clip = clips[clip_id]
        assert clip.source == f"{fer_abs}#row={row + 2}"                              # line 1 is the header
        assert clip.image.dtype == np.uint8 and clip.image.shape == (48, 48)
        np.testing.assert_array_equal(clip.image, pixels[row])
    assert "contempt" in reason(listing, "fer0000007") and "num_classes=8" in reason(listing, "fer0000007")
    assert "most votes say unknown" in reason(listing, "fer0000008")
    assert "not a face (NF)" in reason(listing, "fer0000009")
    assert "no single most-voted emotion" in reason(listing, "fer0000010") \
        and "neutral and happiness have 4 votes each" in reason(listing, "fer0000010")
    assert "FERPlus dropped this image" in reason(listing, "data/fer2013new.csv:13") \
        and "fer2013.csv line 13" in reason(listing, "data/fer2013new.csv:13")
    assert "2303 values" in reason(listing, "fer0000011")
    assert "256 is outside 0..255" in reason(listing, "fer0000012")
    assert "Usage differs" in reason(listing, "fer0000015")
    assert "no row to pair it with" in reason(listing, f"fer2013.csv:{len(FERPLUS_ROWS) + 2}")

    eight = A.list_clips("ferplus", tmp_path / "FERPlus", num_classes=8, vote="plurality")
    assert eight.class_names == CONTEMPT_CLASSES and got(eight)["fer0000007"] == (7, "train")
    check_listing(eight, len(FERPLUS_ROWS) + 1)
    strict = A.list_clips("ferplus", tmp_path / "FERPlus")          # the default: FERPlus's majority rule
    assert set(got(strict)) == set(expected) - {"fer0000016"}
    assert "more than half of the votes" in reason(strict, "fer0000016")
    assert "more than half of the votes" in reason(strict, "fer0000010")


# ------------------------------------------------------------------------------------------------
# Images in the folder and csv adapters
# ------------------------------------------------------------------------------------------------


def test_folder_and_csv_take_images(tmp_path):
    root = tmp_path / "tree"
    image(root / "happy/a.jpg")
    image(root / "Sadness/b.png")
    image(root / "sad/clip1/0001.jpg")              # a folder of images under a label folder: a clip of frames
    image(root / "sad/clip1/0002.jpg")
    image(root / "sad/clip1.jpg")                   # the same stem as the folder: ids keep the extension
    write(root / "angry/empty.jpg", "")
    image(root / "contempt/c.bmp")
    listing = A.list_clips("folder", root, test_fraction=0.0)
    check_listing(listing, 6)
    assert got(listing) == {"happy/a": (0, "train"), "Sadness/b": (1, "train"), "sad/clip1": (1, "train"),
                            "sad/clip1.jpg": (1, "train")}
    sources = {c.clip_id: c.source for c in listing.clips}
    assert sources["sad/clip1"] == str(root.resolve() / "sad/clip1") and sources["happy/a"].endswith("happy/a.jpg")
    assert "image angry/empty.jpg is empty (0 bytes)" in reason(listing, "angry/empty")
    assert "not one of the 7 classes" in reason(listing, "contempt/c")
    assert got(A.list_clips("folder", root, num_classes=8, test_fraction=0.0))["contempt/c"] == (7, "train")

    write(root / "labels.csv", "path,label,split\nhappy/a.jpg,happy,train\nsad/clip1,sad,test\n"
                               "angry/empty.jpg,angry,test\ncontempt/c.bmp,7,test\n")
    rows = A.list_clips("csv", root, num_classes=8)
    check_listing(rows, 4)
    assert got(rows) == {"happy/a": (0, "train"), "sad/clip1": (1, "test"), "contempt/c": (7, "test")}
    assert "labels.csv row 4" in rows.skipped[0].reason and "empty (0 bytes)" in rows.skipped[0].reason


def test_afew_still_refuses_single_images(tmp_path):
    root = tmp_path / "AFEW"
    image(root / "Train/Happy/still.jpg")
    listing = A.list_clips("afew", root)
    assert listing.clips == [] and "single image" in reason(listing, "Train/Happy/still")


# ------------------------------------------------------------------------------------------------
# data_prep.build
# ------------------------------------------------------------------------------------------------


def test_build_options_and_precropped_rule(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        command.main(["--dataset", "rafdb", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--layout", "csv"])
    assert info.value.code == 2 and "--layout does not apply to --dataset rafdb" in capsys.readouterr().err
    box = A.ClipEntry("a", "/x.jpg", 0, "train", face_box=(0.0, 0.0, 4.0, 4.0))
    plain = A.ClipEntry("a", "/x.jpg", 0, "train")
    listing = A.Listing("x", BASIC_CLASSES, [plain])
    assert command.auto_precropped("rafdb", listing, {}) and command.auto_precropped("rafdb", listing, {"images": "aligned"})
    assert not command.auto_precropped("rafdb", listing, {"images": "original"})
    assert command.auto_precropped("ferplus", listing, {})
    assert command.auto_precropped("affectnet", listing, {})
    assert not command.auto_precropped("affectnet", A.Listing("x", BASIC_CLASSES, [box]), {})
    assert not command.auto_precropped("folder", listing, {})


def test_build_rafdb_end_to_end(testdata, tmp_path, capsys):
    """The aligned RAF-DB layout from real faces (the posed expressions of ../shared/testdata, shrunk to 100x100
    like RAF-DB's aligned crops): every listed image is written as a still image, every other input is in the
    manifest with its reason."""
    root = tmp_path / "RAF-DB"
    faces = {"train_00001": ("0-f1-su-ph.jpg", 1), "train_00002": ("0-f15-hao-ph.jpg", 4),
             "test_0001": ("15-f13-anc-ph.jpg", 6), "test_0002": ("45-m7-di-ph.jpg", 3)}
    for stem, (name, _) in faces.items():
        face = cv2.resize(cv2.imread(str(testdata / "images" / name)), (100, 100), interpolation=cv2.INTER_AREA)
        (root / "Image/aligned").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / f"Image/aligned/{stem}_aligned.jpg"), face)
    image(root / "Image/aligned/train_00005_aligned.jpg", size=100)            # not listed
    write(root / "EmoLabel/list_patition_label.txt",
          "".join(f"{stem}.jpg {code}\n" for stem, (_, code) in faces.items()) + "test_0003.jpg 7\n")   # missing
    out = tmp_path / "out"
    code = command.main(["--dataset", "rafdb", "--root", str(root), "--out", str(out), "--workers", "1",
                         "--image-size", "32", "--shard-size", "2"])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert len(lines) == 6
    status = {line["clip_id"]: line["status"] for line in lines}
    assert status == {**{stem: "written" for stem in faces}, "test_0003": "skipped", "train_00005": "skipped"}
    assert all(line.get("reason") for line in lines if line["status"] == "skipped")
    info = json.loads((out / INFO_FILE).read_text())
    assert info["prep"]["precropped"] is True and info["media"] == {"image": 4}
    assert info["splits"]["train"]["per_class"]["surprise"] == 1 and info["splits"]["train"]["per_class"]["happy"] == 1
    assert info["splits"]["test"]["per_class"]["angry"] == 1 and info["splits"]["test"]["per_class"]["disgust"] == 1
    for line in lines:
        if line["status"] == "written":
            rec = records.decode_clip(records.ShardReader(out / line["shard"]).read_record(line["record"]))
            assert rec["clip_id"] == line["clip_id"] and rec["frames"].shape == (1, 32, 32, 3)
            assert rec["label"] == RAFDB_TO_DFERJAX[faces[line["clip_id"]][1]]
