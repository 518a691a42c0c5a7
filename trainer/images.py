"""Decode a user's image file and make it CIFAR-like, for prediction and serving.

A user's image (any size, PNG or JPEG, any colour mode) is made to look like a CIFAR image:
turned upright (EXIF), transparency composited over white, converted to RGB and squashed
to 32x32 with bilinear filtering (how the CIFAR images were downsampled). The preset's
test transform then runs on it unchanged (see ``trainer.predict``).
"""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from trainer.errors import ImageError

CIFAR_SIZE = 32
BACKGROUND = (255, 255, 255)  # what transparent pixels become: CIFAR images have no alpha


def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode an image file or its bytes completely; raise ImageError with the reason."""
    if not isinstance(source, bytes):
        try:
            source = Path(source).read_bytes()
        except OSError as error:
            raise ImageError((error.strerror or str(error)).lower()) from None
    try:
        image = Image.open(io.BytesIO(source))
        image.load()
    except Image.UnidentifiedImageError:
        raise ImageError('not an image (PNG, JPEG or another format Pillow reads)') from None
    except Image.DecompressionBombError as error:
        raise ImageError(f'too many pixels ({error})') from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f'damaged image ({error})') from None
    return image


def to_cifar(image: Image.Image) -> np.ndarray:
    """A uint8 (3, 32, 32) RGB image like CIFAR's: upright, alpha over white, bilinear resize."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N'):  # 16-bit grey: scale to 8 bits
        image = Image.fromarray((np.asarray(image) / 257).clip(0, 255).astype(np.uint8))
    if 'A' in image.getbands() or 'transparency' in image.info:
        image = image.convert('RGBA')
        image = Image.alpha_composite(Image.new('RGBA', image.size, BACKGROUND), image)
    image = image.convert('RGB').resize((CIFAR_SIZE, CIFAR_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()
