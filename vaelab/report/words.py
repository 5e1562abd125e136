"""What the report calls a run's examples: images of pixels, or the rows of a table (metrics.json's dataset "domain").

``doc_words(doc)`` is the one test of the domain for every report text (answer, table, page, captions, the
test-time section); ``vaelab.config.words`` holds the words themselves, shared with the measuring code.
"""
from __future__ import annotations

from typing import Any

from vaelab.config import Words, words


def doc_words(doc: dict[str, Any]) -> Words:
    """What this run's report calls its examples: images, or rows of a table (metrics.json's dataset "domain")."""
    return words((doc.get("dataset") or {}).get("domain"))


def reference_name(key: str, w: Words) -> str:
    """A reference row's name in the text: train vs test, the mean image (row), the noise of its domain."""
    return {"train_vs_test": "train vs test", "mean_image": f"mean {w.one}",
            "uniform_noise": "N(0, I) noise" if w.is_vectors else "uniform noise"}.get(key, key.replace("_", " "))


def space(w: Words) -> str:
    """The space distances between examples are taken in: pixels, or a table's standardised features."""
    return "standardised features" if w.is_vectors else "pixels"


def caption(text: str, w: Words) -> str:
    """A figure caption for this run: ``{images}`` in a figure table's caption names its examples."""
    return text.replace("{images}", w.many)
