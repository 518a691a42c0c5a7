"""Decode a user's image file and make it CIFAR-like: for prediction and serving
(``inference``, ``serving``) and for a folder of training images (``trainer.folders``), so
that training and prediction see the same pixels.

A user's image (any size, PNG or JPEG, any colour mode) is made to look like a CIFAR image:
turned upright (EXIF), transparency composited over white, converted to RGB and squashed
to 32x32 with bilinear filtering (how the CIFAR images were downsampled). The preset's
test transform then runs on it unchanged (see ``inference.predictor``).

Memory stays small even for huge images, because a hostile upload of a few hundred KB can
declare billions of pixels:

- ``open_image`` reads the header first and refuses more than ``max_pixels`` before a
  byte is decoded; JPEGs are decoded by Pillow's DCT scaling (``draft``) at 1/2 to 1/8
  size, at least DRAFT_SIZE pixels a side, so a 48 MP photo decodes to 0.75 MP.
- ``to_cifar_image`` squashes to 32x32 first and only then composites, converts and turns
  the small image; the one full-size copy is a mode conversion Pillow cannot resize
  (palette, CMYK, 16-bit), so a decode peaks at about BYTES_PER_PIXEL per pixel.
"""

import contextlib
import io
import os
import stat
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from trainer.errors import ImageError, ImageTooLargeError

CIFAR_SIZE = 32
BACKGROUND = (255, 255, 255)  # what transparent pixels become: CIFAR images have no alpha
# JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps at least this
# many pixels a side: 8x the final 32, so the bilinear squash still averages many pixels
# (indistinguishable from a full decode) while memory falls by up to 64x.
DRAFT_SIZE = 8 * CIFAR_SIZE
# Peak bytes per decoded pixel of open_image + to_cifar_image (measured on 20 MP PNGs: 4 for
# RGB, grey 16-bit; 8 for RGBA, grey+alpha; 9 for a palette with transparency).
BYTES_PER_PIXEL = 10
# Image.Transpose per EXIF orientation, as ImageOps.exif_transpose (applied at 32x32).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
EXIF_ORIENTATION = 0x0112
WIDE_MODES = ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N')  # integer grey, scaled to 8 bits
ROWS = 256  # rows per band when scaling a wide-mode image, to keep temporaries small


def open_image(
    source: str | os.PathLike | bytes | bytearray,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
) -> Image.Image:
    """Decode an image file or its bytes; raise ImageError with the reason.

    Args:
        source: a path, or the file's bytes.
        max_pixels: refuse (ImageTooLargeError) an image that would decode to more pixels,
            read from its header before decoding; None: Pillow's own bomb limit only.
        formats: Pillow format names to accept (``('PNG', 'JPEG')``); None: all.
    """
    if not isinstance(source, (bytes, bytearray)):
        source = read_file(source)
    with _decoding(formats):
        image = Image.open(io.BytesIO(source), formats=formats)  # reads the header only
        if image.format in ('JPEG', 'MPO'):
            image.draft(None, (DRAFT_SIZE, DRAFT_SIZE))
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageTooLargeError(
            f'image of {image.width}x{image.height} = {image.width * image.height:,} '
            f'pixels is over the limit of {max_pixels:,}'
        )
    with _decoding(formats):
        image.load()
    return image


@contextlib.contextmanager
def _decoding(formats: Sequence[str] | None) -> Iterator[None]:
    """Turn what Pillow raises for a bad or oversized image into ImageError."""
    try:
        yield
    except Image.UnidentifiedImageError:
        wanted = ', '.join(formats) if formats else 'PNG, JPEG or another format Pillow reads'
        raise ImageError(f'not an image ({wanted})') from None
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f'too many pixels ({error})') from None
    except MemoryError:
        raise ImageTooLargeError('image too large to decode in the memory available') from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f'damaged image ({error})') from None
    except Exception as error:  # a decoder tripping on a crafted file (a TIFF tag's type...)
        raise ImageError(f'damaged image ({type(error).__name__}: {error})') from None


# What a path that is not a regular file is, for the one line that refuses it.
FILE_KINDS = (
    (stat.S_ISDIR, 'is a directory'),
    (stat.S_ISFIFO, 'is a FIFO'),
    (stat.S_ISCHR, 'is a character device'),
    (stat.S_ISBLK, 'is a block device'),
    (stat.S_ISSOCK, 'is a socket'),
)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file; ImageError for anything else, before reading it.

    Opened without blocking (a FIFO with no writer would wait forever) and checked with
    ``fstat`` on the open file, so ``/dev/zero``, a FIFO or a directory is one line, not an
    endless read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as error:
        raise ImageError((error.strerror or str(error)).lower()) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((text for test, text in FILE_KINDS if test(mode)), 'is not a regular file')
            raise ImageError(f'{kind}, not an image file')
        os.set_blocking(fd, True)
        with open(fd, 'rb', closefd=False) as f:
            return f.read()
    except OSError as error:
        raise ImageError((error.strerror or str(error)).lower()) from None
    finally:
        os.close(fd)


def to_cifar_image(image: Image.Image) -> Image.Image:
    """The 32x32 RGB image like CIFAR's: upright, alpha over white, bilinear squash.

    Resizing comes first (Pillow resizes RGBA premultiplied, so compositing after it is
    compositing before it, to rounding) and everything else runs on 32x32 pixels.
    """
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: leave the image as stored
        orientation = 1
    if image.mode in WIDE_MODES:
        image = _to_8_bits(image)
    transparent = 'transparency' in image.info
    if image.mode not in ('L', 'LA', 'RGB', 'RGBA') or transparent:
        # palettes, bilevel, CMYK, YCbCr, float, colour-keyed transparency: Pillow cannot
        # resize these as colours, so convert the full image once.
        alpha = transparent or 'A' in image.getbands() or image.mode == 'PA'
        image = image.convert('RGBA' if alpha else 'RGB')
    if image.size != (CIFAR_SIZE, CIFAR_SIZE):
        image = image.resize((CIFAR_SIZE, CIFAR_SIZE), Image.Resampling.BILINEAR)
    if 'A' in image.getbands():
        image = image.convert('RGBA')
        image = Image.alpha_composite(Image.new('RGBA', image.size, BACKGROUND), image)
    image = image.convert('RGB')
    if orientation in ORIENTATIONS:
        image = image.transpose(ORIENTATIONS[orientation])
    return image


def to_cifar(image: Image.Image) -> np.ndarray:
    """A uint8 (3, 32, 32) RGB array like CIFAR's (``to_cifar_image`` as an array)."""
    return np.asarray(to_cifar_image(image)).transpose(2, 0, 1).copy()


def _to_8_bits(image: Image.Image) -> Image.Image:
    """16- or 32-bit grey scaled to 8 bits (value / 257), in bands of ROWS rows."""
    width, height = image.size
    out = np.empty((height, width), np.uint8)
    for top in range(0, height, ROWS):
        band = np.asarray(image.crop((0, top, width, min(height, top + ROWS))))
        out[top : top + ROWS] = (band / 257).clip(0, 255)  # truncated, as astype(uint8)
    return Image.fromarray(out)
