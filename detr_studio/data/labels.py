"""How a model's labels meet a document's categories, and which labels count as ground truth.

One rule for the whole program (accepting predictions, the review queue's mistakes, the image filter): a
predicted label and a document category are the same class when the model names the label and the names are
equal; when the model has no name for the label (no class table, or the table's unused "N/A" slot), when the
ids are equal. A label the document has no category for becomes a new category named after the label.

`is_trusted` says which annotations a training run learns from and the review queue checks predictions against:
every one except rejected ones and model proposals nobody has looked at yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..model.classes import UNUSED_NAME
from .coco import Annotation, Category


def model_name(class_names: Mapping[int, str], label: int) -> str | None:
    """The model's own name for ``label``, or None when it has none."""
    name = class_names.get(int(label))
    return None if name is None or name == UNUSED_NAME else name


def label_name(class_names: Mapping[int, str], label: int) -> str:
    """What to call a predicted label: the model's name, else ``"class <label>"``."""
    name = model_name(class_names, label)
    return f"class {int(label)}" if name is None else name


def same_class(label: int, category: Category, class_names: Mapping[int, str]) -> bool:
    """The one rule: by name when the model names ``label``, else by id."""
    name = model_name(class_names, label)
    return category.id == int(label) if name is None else category.name == name


def matching_category(
    label: int, categories: Iterable[Category], class_names: Mapping[int, str]
) -> Category | None:
    """The first of ``categories`` that is the same class as ``label``."""
    return next((c for c in categories if same_class(label, c, class_names)), None)


def category_for_label(
    categories: Iterable[Category], label: int, class_names: Mapping[int, str], new: dict[int, dict]
) -> int:
    """The category id a model label goes to when a prediction is accepted: the matching category of the
    document, else one already planned in ``new`` (id -> category record), else a new one, added to ``new``,
    named after the label and keeping the label's id when that id is free."""
    known = list(categories)
    match = matching_category(label, known, class_names)
    if match is not None:
        return match.id
    name = label_name(class_names, label)
    for cid, rec in new.items():
        if rec["name"] == name:
            return cid
    taken = {c.id for c in known} | set(new)
    cid = int(label) if int(label) not in taken else max([*taken, 0]) + 1
    new[cid] = {"id": cid, "name": name}
    return cid


def is_trusted(ann: Annotation) -> bool:
    """Labels a run trains on (and the review queue checks against): all but rejected ones and model
    proposals nobody has looked at yet."""
    return ann.review != "rejected" and not (ann.source == "model" and ann.review == "pending")
