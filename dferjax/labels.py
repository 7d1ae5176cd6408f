"""Expression classes: one 0-based order for every dataset (docs/DESIGN.md, "Labels").

The order is DFEW's (labels 1-7 there): happy, sad, neutral, angry, surprise, disgust, fear. MAFW's
single-label protocol adds four classes after them: contempt, anxiety, helplessness, disappointment.
Each data_prep adapter maps its dataset's own names or codes to these indices and documents how.
"""

from __future__ import annotations

BASIC_CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
MAFW_CLASSES = BASIC_CLASSES + ("contempt", "anxiety", "helplessness", "disappointment")


def class_names(num_classes: int) -> tuple[str, ...]:
    """The class names of a 7-class (DFEW, FERV39k, AFEW) or 11-class (MAFW) problem."""
    if num_classes == len(BASIC_CLASSES):
        return BASIC_CLASSES
    if num_classes == len(MAFW_CLASSES):
        return MAFW_CLASSES
    raise ValueError(f"model.num_classes must be 7 (DFEW order) or 11 (MAFW), got {num_classes}")
