"""Class tables: which name, kind (thing or stuff) and colour belongs to each category id.

A model's classifier predicts category ids directly, as the reference implementation does: index ``i`` of
the logits is category id ``i``, and ``num_classes`` is the largest id + 1 (index ``num_classes`` is
"no object"). A ``ClassTable`` therefore keys everything by category id and fills ids that name no
category with ``"N/A"``, so ``names[i]`` exists for every logit index below ``num_classes``.

The COCO tables ship as JSON inside the package (``detr_studio/resources``); ``to_json``/``from_json``
embed a table in our checkpoint sidecars.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

UNUSED_NAME = "N/A"
"""The name of an id that has no category (a gap in COCO's ids, or index 0 of a 1-based list)."""

Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassTable:
    """Category names, thing/stuff flags and display colours, keyed by category id.

    ``names`` covers every id from 0 to ``num_classes - 1``; ids without a category are ``"N/A"``.
    ``isthing`` and ``colors`` hold entries for the real categories only; use ``is_thing`` and
    ``color`` to read them with sensible defaults.
    """

    names: dict[int, str]
    isthing: dict[int, bool] = field(default_factory=dict)
    colors: dict[int, Color] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a class table needs at least one category")
        for cid, name in self.names.items():
            if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
                raise ValueError(f"category id {cid!r} is not a non-negative integer")
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"category id {cid} has an empty or non-text name: {name!r}")
        for label, mapping in (("isthing", self.isthing), ("colors", self.colors)):
            stray = sorted(set(mapping) - set(self.names))
            if stray:
                raise ValueError(f"{label} has entries for ids that have no name: {stray}")
        for cid, color in self.colors.items():
            if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
                raise ValueError(
                    f"category id {cid} has a colour that is not three integers 0..255: {color!r}"
                )

    @property
    def num_classes(self) -> int:
        """The classifier size in the reference sense: the largest id + 1 (no-object is this index)."""
        return max(self.names) + 1

    @property
    def ids(self) -> list[int]:
        """Ids of the real categories (those not named ``"N/A"``), ascending."""
        return sorted(cid for cid, name in self.names.items() if name != UNUSED_NAME)

    @property
    def thing_ids(self) -> list[int]:
        return [cid for cid in self.ids if self.is_thing(cid)]

    @property
    def stuff_ids(self) -> list[int]:
        return [cid for cid in self.ids if not self.is_thing(cid)]

    def name(self, category_id: int) -> str:
        """The name of an id; ``"N/A"`` for ids outside the table (and for no-object)."""
        return self.names.get(int(category_id), UNUSED_NAME)

    def is_thing(self, category_id: int) -> bool:
        """Whether an id is a countable thing; ids without a flag count as things."""
        return self.isthing.get(int(category_id), True)

    def color(self, category_id: int) -> Color:
        """The table's colour for an id, or a stable generated one when the table has none."""
        cid = int(category_id)
        return self.colors.get(cid) or generated_color(cid)

    def id_of(self, name: str) -> int:
        """The id of a category by name; raises KeyError listing the known names when absent."""
        for cid in self.ids:
            if self.names[cid] == name:
                return cid
        raise KeyError(
            f"no category named {name!r}; known names: {', '.join(self.names[c] for c in self.ids)}"
        )

    def label_names(self) -> list[str]:
        """Names as a list indexed by logit index, ``num_classes`` long (no-object not included)."""
        return [self.name(i) for i in range(self.num_classes)]

    @classmethod
    def from_names(cls, names: list[str]) -> ClassTable:
        """A table for a user's own classes: ``names[k]`` gets id ``k + 1``; id 0 is ``"N/A"``.

        So ``num_classes == len(names) + 1``, the reference convention for 1-based ids.
        """
        names = list(names)
        if not names:
            raise ValueError("the class list is empty; give at least one class name")
        _check_unique(names, "the class list")
        if UNUSED_NAME in names:
            raise ValueError(f"{UNUSED_NAME!r} is reserved for ids without a category; rename that class")
        table = {0: UNUSED_NAME}
        table.update({i + 1: n for i, n in enumerate(names)})
        return cls(names=table, isthing={i + 1: True for i in range(len(names))})

    @classmethod
    def from_categories(cls, categories: list[dict[str, Any]], num_classes: int | None = None) -> ClassTable:
        """A table from COCO ``categories`` records (``id``, ``name``, optional ``isthing``/``color``).

        Ids keep their values; gaps below the largest id, and up to ``num_classes - 1`` when given,
        are ``"N/A"``.
        """
        names: dict[int, str] = {}
        isthing: dict[int, bool] = {}
        colors: dict[int, Color] = {}
        for k, cat in enumerate(categories):
            if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
                raise ValueError(f"category #{k} must be an object with 'id' and 'name': {cat!r}")
            cid = cat["id"]
            if not isinstance(cid, int) or isinstance(cid, bool) or cid < 0:
                raise ValueError(
                    f"category #{k} ({cat.get('name')!r}) has id {cid!r}, not a non-negative integer"
                )
            if cid in names:
                raise ValueError(f"category id {cid} appears twice ({names[cid]!r} and {cat['name']!r})")
            names[cid] = cat["name"]
            if "isthing" in cat:
                isthing[cid] = bool(cat["isthing"])
            if cat.get("color") is not None:
                colors[cid] = _as_color(cat["color"], f"category id {cid}")
        if not names:
            raise ValueError("the category list is empty")
        _check_unique([names[c] for c in sorted(names)], "the category list")
        top = max(names) + 1
        if num_classes is not None:
            if num_classes < top:
                raise ValueError(
                    f"num_classes={num_classes} is too small for the largest category id {top - 1}"
                )
            top = num_classes
        full = {cid: names.get(cid, UNUSED_NAME) for cid in range(top)}
        return cls(names=full, isthing=isthing, colors=colors)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the real categories plus ``num_classes`` (gaps are implied)."""
        categories = []
        for cid in self.ids:
            entry: dict[str, Any] = {"id": cid, "name": self.names[cid], "isthing": self.is_thing(cid)}
            if cid in self.colors:
                entry["color"] = list(self.colors[cid])
            categories.append(entry)
        return {"num_classes": self.num_classes, "categories": categories}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "class table") -> ClassTable:
        """Rebuild a table written by ``to_json``; ``source`` (e.g. a file name) is named in errors."""
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise ValueError(f"{source}: expected an object with a 'categories' list")
        num_classes = data.get("num_classes")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"{source}: num_classes must be a positive integer, got {num_classes!r}")
        try:
            return cls.from_categories(data["categories"], num_classes=num_classes)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err


def generated_color(category_id: int) -> Color:
    """A bright colour that is the same for an id every time (golden-ratio hue steps)."""
    hue = (category_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


@lru_cache(maxsize=1)
def _panoptic_table() -> ClassTable:
    data = _read_resource("coco_panoptic_classes.json")
    return ClassTable.from_json(data, source="coco_panoptic_classes.json")


@lru_cache(maxsize=1)
def _detection_table() -> ClassTable:
    data = _read_resource("coco_detection_classes.json")
    names = data.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("coco_detection_classes.json: expected a 'names' list of strings")
    panoptic = _panoptic_table()
    real = [i for i, n in enumerate(names) if n != UNUSED_NAME]
    return ClassTable(
        names=dict(enumerate(names)),
        isthing={i: True for i in real},
        colors={i: panoptic.colors[i] for i in real if i in panoptic.colors},
    )


def coco_detection_classes() -> ClassTable:
    """The 91-entry COCO detection table of the official detection models (ids 0..90, 80 real)."""
    return _copy(_detection_table())


def coco_panoptic_classes() -> ClassTable:
    """The 250-entry COCO panoptic table of the official panoptic models (80 things, 53 stuff).

    Only the 133 real categories carry ``isthing`` flags; the official post-processing treats every
    id up to 90 as a thing (``{i: i <= 90}``).
    """
    return _copy(_panoptic_table())


def _copy(table: ClassTable) -> ClassTable:
    """A copy, so that a caller editing its dicts cannot change the cached table."""
    return ClassTable(names=dict(table.names), isthing=dict(table.isthing), colors=dict(table.colors))


def _read_resource(filename: str) -> dict[str, Any]:
    path = resources.files("detr_studio").joinpath("resources", filename)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"class table {filename} is missing from the installed package") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{filename}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{filename}: expected a JSON object at the top level")
    return data


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if not isinstance(n, str) or not n.strip():
            raise ValueError(f"{what} has an empty or non-text name: {n!r}")
        if n == UNUSED_NAME:
            continue
        if n in seen:
            raise ValueError(f"{what} names {n!r} twice")
        seen.add(n)


def _as_color(value: Any, where: str) -> Color:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{where}: colour must be three integers 0..255, got {value!r}")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
        raise ValueError(f"{where}: colour must be three integers 0..255, got {value!r}")
    return (value[0], value[1], value[2])


MAX_CATEGORY_ID = 1_000_000


def parse_class_names(raw: Any, where: str) -> dict[int, str] | None:
    """The ``{"<id>": "<name>"}`` object of a sidecar, training checkpoint, ONNX file or Hugging Face
    ``id2label`` -> {id: name}; None when absent or empty. Raises ValueError naming ``where`` and the key."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object of category id -> name, got a {type(raw).__name__}")
    names: dict[int, str] = {}
    for key, name in raw.items():
        text = str(key).strip()
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_CATEGORY_ID:
            raise ValueError(
                f"{where} key {key!r} is not a category id (a whole number from 0 to {MAX_CATEGORY_ID})"
            )
        if not isinstance(name, str):
            raise ValueError(f"{where}[{key!r}] must be a name (a string), got {name!r}")
        names[int(text)] = name
    return names


def default_class_names(num_classes: int) -> dict[int, str] | None:
    """COCO names for the official class counts (91 detection, 250 panoptic); None otherwise."""
    if num_classes == 91:
        return dict(coco_detection_classes().names)
    if num_classes == 250:
        return dict(coco_panoptic_classes().names)
    return None


COCO_LAST_THING_ID = 90


def coco_panoptic_is_thing(cat_id: int) -> bool:
    """COCO panoptic convention: category ids up to 90 are things, the rest are stuff."""
    return cat_id <= COCO_LAST_THING_ID


def default_is_thing_map(num_classes: int) -> dict[int, bool]:
    """{class id: is a thing} for every class id 0..num_classes-1, with the COCO panoptic convention."""
    return {i: coco_panoptic_is_thing(i) for i in range(num_classes)}
