"""Draw the DETR Studio icon: an SVG and PNGs from 16 to 256 px, for installers and the window.

The icon is a shape (an orange disc) inside a detection box with a class tag, on a rounded blue square.
The PNGs are drawn with Pillow at 8x and scaled down, so every size comes from the same geometry as the SVG.
Run from the repository root: ``python packaging/make_icons.py``. It writes the same files to
``packaging/icons`` (for the .desktop file and installers) and ``detr_studio/resources/icons`` (for the
window), and its output depends on nothing but this file.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

SIZES = (16, 24, 32, 48, 64, 128, 256)
NAME = "detr-studio"
ROOT = Path(__file__).resolve().parent.parent
TARGETS = (ROOT / "packaging" / "icons", ROOT / "detr_studio" / "resources" / "icons")
SUPERSAMPLE = 8

# geometry on a 256-unit canvas
BACKGROUND = "#1d3557"
BOX = "#2ee6a6"
DISC = "#f4a261"
DISC_EDGE = "#e76f51"
CORNER_RADIUS = 44
BOX_RECT = (58, 78, 204, 214)  # x0, y0, x1, y1 of the detection box
BOX_WIDTH = 14
TAG_RECT = (51, 38, 142, 78)  # the class tag on top of the box's left edge
DISC_CENTRE, DISC_RADIUS, DISC_EDGE_WIDTH = (131, 146), 50, 10


def svg() -> str:
    """The icon as an SVG document."""
    x0, y0, x1, y1 = BOX_RECT
    tx0, ty0, tx1, ty1 = TAG_RECT
    cx, cy = DISC_CENTRE
    half = BOX_WIDTH / 2
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">\n'
        f"  <title>DETR Studio</title>\n"
        f'  <rect x="0" y="0" width="256" height="256" rx="{CORNER_RADIUS}" fill="{BACKGROUND}"/>\n'
        f'  <circle cx="{cx}" cy="{cy}" r="{DISC_RADIUS - DISC_EDGE_WIDTH / 2}" fill="{DISC}" '
        f'stroke="{DISC_EDGE}" stroke-width="{DISC_EDGE_WIDTH}"/>\n'
        f'  <rect x="{x0 + half}" y="{y0 + half}" width="{x1 - x0 - BOX_WIDTH}" height="{y1 - y0 - BOX_WIDTH}" '
        f'fill="none" stroke="{BOX}" stroke-width="{BOX_WIDTH}"/>\n'
        f'  <rect x="{tx0}" y="{ty0}" width="{tx1 - tx0}" height="{ty1 - ty0}" fill="{BOX}"/>\n'
        "</svg>\n"
    )


def _scaled(values: tuple[float, ...], scale: float) -> list[float]:
    return [v * scale for v in values]


def png(size: int) -> Image.Image:
    """The icon as an RGBA image of ``size`` x ``size`` pixels."""
    big = size * SUPERSAMPLE
    scale = big / 256
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, big - 1, big - 1), radius=CORNER_RADIUS * scale, fill=BACKGROUND)
    cx, cy = DISC_CENTRE
    disc = (cx - DISC_RADIUS, cy - DISC_RADIUS, cx + DISC_RADIUS, cy + DISC_RADIUS)
    draw.ellipse(_scaled(disc, scale), fill=DISC, outline=DISC_EDGE, width=round(DISC_EDGE_WIDTH * scale))
    x0, y0, x1, y1 = _scaled(BOX_RECT, scale)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX, width=round(BOX_WIDTH * scale))
    draw.rectangle(_scaled(TAG_RECT, scale), fill=BOX)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def write(targets: tuple[Path, ...] = TARGETS) -> list[Path]:
    """Write ``detr-studio.svg`` and ``detr-studio-<size>.png`` into each target folder."""
    written = []
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{NAME}.svg"
        path.write_text(svg(), encoding="utf-8")
        written.append(path)
        for size in SIZES:
            path = folder / f"{NAME}-{size}.png"
            png(size).save(path, optimize=True)
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(ROOT))
