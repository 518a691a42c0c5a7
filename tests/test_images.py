"""trainer.images: the pixel limit from the header, JPEG draft decoding, the shrink-first
pipeline (same answers as converting first, to rounding) and its memory per pixel."""

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from benchmarks.serve_load import OVER_LIMIT, png_bomb
from trainer.errors import ImageError
from trainer.images import (
    BYTES_PER_PIXEL,
    ROWS,
    ImageTooLargeError,
    open_image,
    to_cifar,
    to_cifar_image,
)

ROOT = Path(__file__).resolve().parent.parent


def encode(image: Image.Image, kind: str = 'PNG', **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def smooth(size, seed=0, channels=3) -> np.ndarray:
    """A photo-like uint8 image: low-frequency noise, bilinearly enlarged."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, channels), dtype=np.uint8)
    mode = {3: 'RGB', 4: 'RGBA'}[channels]
    return np.asarray(Image.fromarray(small, mode).resize(size, Image.Resampling.BILINEAR))


def old_to_cifar(image: Image.Image) -> np.ndarray:
    """The previous pipeline: convert at full size, then resize (the reference)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ('I', 'I;16'):
        image = Image.fromarray((np.asarray(image) / 257).clip(0, 255).astype(np.uint8))
    if 'A' in image.getbands() or 'transparency' in image.info:
        image = image.convert('RGBA')
        image = Image.alpha_composite(Image.new('RGBA', image.size, (255,) * 3), image)
    image = image.convert('RGB').resize((32, 32), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)


def test_pixels_over_the_limit_are_refused_from_the_header():
    bomb = png_bomb(*OVER_LIMIT)
    began = time.monotonic()
    with pytest.raises(ImageTooLargeError, match=r'^image of 13000x13000 = 169,000,000 pixels'):
        open_image(bomb, max_pixels=40_000_000)
    assert time.monotonic() - began < 0.5  # the header only: decoding takes seconds
    assert isinstance(ImageTooLargeError('x'), ImageError)


def test_a_large_jpeg_is_decoded_at_a_fraction_and_counted_so():
    data = encode(Image.fromarray(smooth((4096, 2048))), 'JPEG', quality=90)
    image = open_image(data, max_pixels=150_000)  # 8.4 MP in the file, 1/8 decoded
    assert image.size == (512, 256)
    with pytest.raises(ImageTooLargeError, match='512x256'):
        open_image(data, max_pixels=100_000)


def test_draft_decoding_gives_nearly_the_full_decode():
    data = encode(Image.fromarray(smooth((2400, 1800), seed=1)), 'JPEG', quality=95)
    full = Image.open(io.BytesIO(data))
    full.load()
    drafted = to_cifar(open_image(data)).astype(int)
    difference = np.abs(drafted - old_to_cifar(full).astype(int))
    assert difference.mean() < 1 and difference.max() <= 4


def test_small_jpegs_are_decoded_in_full():
    data = encode(Image.fromarray(smooth((300, 200))), 'JPEG')
    assert open_image(data).size == (300, 200)


def test_formats_can_be_restricted():
    pcx = encode(Image.new('RGB', (8, 8), (1, 2, 3)), 'PCX')
    assert open_image(pcx).format == 'PCX'
    with pytest.raises(ImageError, match=r'^not an image \(PNG, JPEG\)$'):
        open_image(pcx, formats=('PNG', 'JPEG'))


def test_damaged_and_foreign_bytes():
    with pytest.raises(ImageError, match='^damaged image'):
        open_image(encode(Image.fromarray(smooth((64, 64))))[:200])
    with pytest.raises(ImageError, match='^not an image'):
        open_image(b'hello')


@pytest.mark.parametrize('orientation', [1, 3, 6, 8])
def test_exif_orientation_is_applied(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(smooth((64, 40), seed=2)), 'PNG', exif=exif)
    got = to_cifar(open_image(data)).astype(int)
    expected = old_to_cifar(Image.open(io.BytesIO(data))).astype(int)
    assert np.abs(got - expected).max() <= 1


def test_transparency_is_composited_over_white_as_before():
    rgba = smooth((50, 40), seed=3, channels=4)
    got = to_cifar(open_image(encode(Image.fromarray(rgba, 'RGBA')))).astype(int)
    expected = old_to_cifar(Image.fromarray(rgba, 'RGBA')).astype(int)
    assert np.abs(got - expected).max() <= 2
    palette = Image.new('P', (40, 40), 0)
    palette.putpalette([0, 0, 0, 10, 200, 30])
    palette.paste(1, (0, 0, 20, 40))
    x = to_cifar(open_image(encode(palette, transparency=0)))
    assert (x[:, :, -4:] == 255).all() and (x[:, :, :4] == [[[10]], [[200]], [[30]]]).all()


def test_16_bit_grey_is_scaled_in_bands_exactly_as_before():
    rng = np.random.default_rng(4)
    wide = rng.integers(0, 65536, (2 * ROWS + 17, 90), dtype=np.uint16)
    image = Image.fromarray(wide)
    np.testing.assert_array_equal(to_cifar(image), old_to_cifar(image))


def test_the_result_is_a_32x32_rgb_image():
    image = to_cifar_image(open_image(encode(Image.new('L', (7, 300), 9))))
    assert image.mode == 'RGB' and image.size == (32, 32)


MEASURE = """
import resource, sys
from benchmarks.serve_load import png_bomb
from trainer.images import open_image, to_cifar_image
data = png_bomb(4000, 4000, *map(int, sys.argv[1:]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
to_cifar_image(open_image(data))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.parametrize(
    ('bit_depth', 'colour'), [(16, 0), (8, 2), (8, 6), (8, 4)], ids=['grey16', 'rgb', 'rgba', 'la']
)
def test_decoding_takes_at_most_bytes_per_pixel(bit_depth, colour):
    """16 MP: the decoded image and at most one full-size copy, in a fresh process."""
    out = subprocess.run(
        [sys.executable, '-c', MEASURE, str(bit_depth), str(colour)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    assert int(out.stdout) < BYTES_PER_PIXEL * 4000 * 4000
