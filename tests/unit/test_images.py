"""Reading image headers and pixels of files that go wrong: every failure is an `ImageReadError` naming the
file, never a Pillow exception that a caller does not expect."""

from __future__ import annotations

import pytest

from detr_studio.data.images import ImageReadError, image_size, load_image

from ..bad_images import write_bomb_png, write_not_an_image


def test_the_header_of_a_decompression_bomb_is_refused_with_the_file_named(tmp_path):
    bomb = write_bomb_png(tmp_path / "bomb.png")
    for read in (image_size, load_image):
        with pytest.raises(ImageReadError, match="bomb.png: refused as a possible decompression bomb"):
            read(bomb)


def test_a_missing_file_and_a_text_file_are_named_in_one_line(tmp_path):
    with pytest.raises(ImageReadError, match="gone.jpg: no such file"):
        image_size(tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError, match="text.jpg: cannot read image header"):
        image_size(write_not_an_image(tmp_path / "text.jpg"))
