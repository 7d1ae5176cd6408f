"""Expression classes: one 0-based order for every dataset (docs/DESIGN.md, "Labels").

The order is DFEW's (labels 1-7 there): happy, sad, neutral, angry, surprise, disgust, fear. Contempt
is the eighth (AffectNet-8, CK+); MAFW's single-label protocol adds three more after it: anxiety,
helplessness, disappointment. Every problem's classes are a prefix of :data:`MAFW_CLASSES`: 7 (DFEW,
FERV39k, AFEW, RAF-DB, AffectNet-7, FERPlus), 8 (AffectNet-8, CK+) or 11 (MAFW). Each data_prep adapter
maps its dataset's own names or codes to these indices and documents how.
"""

from __future__ import annotations

BASIC_CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
CONTEMPT_CLASSES = BASIC_CLASSES + ("contempt",)
MAFW_CLASSES = CONTEMPT_CLASSES + ("anxiety", "helplessness", "disappointment")
CLASS_COUNTS = (len(BASIC_CLASSES), len(CONTEMPT_CLASSES), len(MAFW_CLASSES))
"""The class counts a problem may have: 7, 8 or 11."""


def class_names(num_classes: int) -> tuple[str, ...]:
    """The class names of a 7-class (DFEW order), 8-class (with contempt) or 11-class (MAFW) problem.

    Args:
      num_classes: 7, 8 or 11.
    Returns:
      The first ``num_classes`` names of :data:`MAFW_CLASSES`.
    Raises:
      ValueError: another count (the message names model.num_classes and the counts allowed).
    """
    if num_classes not in CLASS_COUNTS:
        raise ValueError(f"model.num_classes must be 7 (DFEW order), 8 (with contempt: AffectNet-8, CK+) or "
                         f"11 (MAFW), got {num_classes}")
    return MAFW_CLASSES[:num_classes]
