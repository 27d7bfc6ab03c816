"""Counted nouns: one helper, so that no message says "1 annotations"."""

from detr_studio.common.text import plural


def test_one_is_singular_and_every_other_count_plural():
    assert plural(1, "annotation") == "1 annotation"
    assert plural(0, "annotation") == "0 annotations"
    assert plural(2, "box", "boxes") == "2 boxes"
    assert plural(1, "box", "boxes") == "1 box"
    assert plural(12_000, "image") == "12,000 images"
    assert plural(1, "full epoch") == "1 full epoch"
