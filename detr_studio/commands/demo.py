"""``detr-studio demo OUT_DIR``: write the synthetic shapes dataset (COCO instances + panoptic) to a folder.

`data.synthetic.DEMO` is the one recipe of the built-in demo: the command's defaults, the dataset the window
writes on first start and the data the bundled demo model was trained and evaluated on. Both write it through
`data.synthetic.generate_demo`, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tqdm import tqdm

from ..data import synthetic
from ..data.synthetic import DEMO, DemoRecipe
from .errors import CommandError

MIN_SIZE, MAX_SIZE = 32, 4096


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="write a small synthetic COCO dataset (shapes on textured backgrounds) to try training on",
        description="Write OUT_DIR/{train,val}/*.jpg, OUT_DIR/annotations/instances_{train,val}.json and "
        "panoptic_{train,val}.json with their PNGs. The same seed gives the same files.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the dataset into")
    parser.add_argument(
        "--train",
        type=int,
        default=DEMO.num_train,
        help=f"number of training images (default {DEMO.num_train})",
    )
    parser.add_argument(
        "--val", type=int, default=DEMO.num_val, help=f"number of validation images (default {DEMO.num_val})"
    )
    parser.add_argument(
        "--size", type=int, default=DEMO.size, help=f"longer image side in pixels (default {DEMO.size})"
    )
    parser.add_argument("--seed", type=int, default=DEMO.seed, help=f"random seed (default {DEMO.seed})")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the dataset folders already in OUT_DIR"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.train < 1:
        raise CommandError(f"--train must be at least 1, got {args.train}")
    if args.val < 0:
        raise CommandError(f"--val must not be negative, got {args.val}")
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise CommandError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"{out_dir}: exists and is not a folder")
    layout = synthetic.SyntheticLayout(out_dir)
    ours = [layout.images_dir(split) for split in synthetic.SPLITS] + [layout.instances_json("train").parent]
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not getattr(args, "overwrite", False):
            raise CommandError(
                f"{out_dir}: folder is not empty (pass --overwrite to replace the dataset in it)"
            )
        for folder in ours:
            if folder.is_dir():
                shutil.rmtree(folder)
    try:
        with tqdm(total=args.train + args.val, unit="img", desc="demo data") as bar:
            synthetic.generate_demo(
                out_dir,
                DemoRecipe(args.train, args.val, args.size, args.seed),
                progress=lambda n: bar.update(n - bar.n),
            )
    except OSError as exc:
        raise CommandError(f"{out_dir}: cannot write the dataset ({exc})") from None
    for split in synthetic.SPLITS:
        print(
            f"{split}: {layout.images_dir(split)}  {layout.instances_json(split)}  {layout.panoptic_json(split)}"
        )
    return 0
