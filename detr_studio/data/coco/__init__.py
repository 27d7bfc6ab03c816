"""COCO datasets in memory: read with validation, edit with undo, save atomically, recover after a crash.

The package, one concept per module (each imports its siblings directly, never this ``__init__``):

- `problems`: `Problem`, `DatasetError` (what the commands catch) and `CocoFormatError`, the save errors;
- `values`, `paths`, `masks`, `checks`: JSON values, file names kept inside the dataset's folders, mask
  checks that keep pycocotools safe, and the checks of single records;
- `validate`, `index`: checking a whole file while indexing it into a `CocoIndex`, whose methods are the
  only code that changes the records;
- `records`: the typed views `ImageInfo`, `Category`, `Annotation`, `Segment` and our own fields;
- `edits`: every change as an `Edit` with its inverse;
- `mask_geometry`, `contours`, `polygons`, `brush`, `mask_edits`: instance masks in their stored form
  (decode, encode, COCO's bbox and area, carried along with a moved box), tracing masks into polygons
  (holes bridged or filled), polygon vertex editing, region-local brush strokes, and the edits that change a
  mask with its bbox and area;
- `panoptic`: the PNGs of segment ids, their check, and the conversion to instances;
- `id_maps`, `panoptic_edits`, `segment_edits`, `panoptic_save`: editing panoptic segments (the id maps
  held per edited image, the pixel and ``segments_info`` edits with region-only inverses, relabel / merge /
  split / paint / delete / add), and saving the changed PNGs and the JSON as one atomic unit;
- `journal`, `lock`, `persistence`: the crash journal, one lock per open file, atomic saving with backups
  and conflict detection;
- `queries`, `document`: `CocoDocument`, the one way the window, ``train`` and ``eval`` read COCO.
"""

from detr_studio.common.panoptic_ids import id2rgb, rgb2id
from detr_studio.data.images import ImageReadError, image_size

from .checks import EDGE_SLACK_PX, EDGE_TOLERANCE
from .document import CocoDocument, read_coco_json
from .edits import (
    AddAnnotations,
    AddCategory,
    Batch,
    Edit,
    MergeCategories,
    Relabel,
    RemoveAnnotations,
    RemoveCategory,
    RenameCategory,
    SetImageReviewed,
    SetReviewState,
    UpdateAnnotation,
    UpdateCategory,
    UpdateImage,
    UpdateRecord,
)
from .index import CocoIndex
from .journal import JOURNAL_FORMAT
from .panoptic import id_map_problems, read_id_png
from .paths import name_problem, resolve_inside
from .persistence import BACKUPS
from .problems import (
    CocoConflictError,
    CocoEditError,
    CocoFormatError,
    CocoReadOnlyError,
    CocoSaveError,
    DatasetError,
    Problem,
)
from .records import OUR_KEY, REVIEW_STATES, SOURCES, Annotation, Category, ImageInfo, Segment, is_rejected

__all__ = [
    "BACKUPS",
    "EDGE_SLACK_PX",
    "EDGE_TOLERANCE",
    "JOURNAL_FORMAT",
    "OUR_KEY",
    "REVIEW_STATES",
    "SOURCES",
    "AddAnnotations",
    "AddCategory",
    "Annotation",
    "Batch",
    "Category",
    "CocoConflictError",
    "CocoDocument",
    "CocoEditError",
    "CocoFormatError",
    "CocoIndex",
    "CocoReadOnlyError",
    "CocoSaveError",
    "DatasetError",
    "Edit",
    "ImageInfo",
    "ImageReadError",
    "MergeCategories",
    "Problem",
    "Relabel",
    "RemoveAnnotations",
    "RemoveCategory",
    "RenameCategory",
    "Segment",
    "SetImageReviewed",
    "SetReviewState",
    "UpdateAnnotation",
    "UpdateCategory",
    "UpdateImage",
    "UpdateRecord",
    "id2rgb",
    "id_map_problems",
    "image_size",
    "is_rejected",
    "name_problem",
    "read_coco_json",
    "read_id_png",
    "resolve_inside",
    "rgb2id",
]
