"""Reading and writing still images as float tensors [C, H, W] in [0, 1], with Pillow.

``read_image`` accepts what Pillow decodes and turns every mode into grey or RGB:

- palette (P, PA) images are expanded through their palette (and transparency);
- alpha (LA, RGBA, PA, premultiplied La / RGBa) is composited on a white background, as a
  viewer shows the image on a white page;
- 16-bit grey (I;16, I;16B, I;16L) is scaled by 1/65535; 32-bit integer grey (I) is read the
  same way when its values fit in 16 bits (a 16-bit PNG or TIFF), otherwise refused;
  16-bit RGB PNGs are decoded by Pillow to 8 bits per channel;
- CMYK and YCbCr are converted to RGB (Pillow's conversion, without colour management);
  bilevel (1) images become grey 0 / 1;
- EXIF orientation is applied, so a photo comes out the way it is shown;
- of an animated image (GIF, APNG, multi-page TIFF) only the first frame is read.

Floating-point (F), LAB and HSV images are refused. A file whose width x height exceeds
``MAX_PIXELS`` is refused from its header, before any pixel is decoded. Every failure
(missing, empty or non-image file, truncated or corrupt data, zero or huge size) is a
``CodecError`` with one sentence that names the file.

``write_image`` writes PNG (or JPEG 95 / BMP / TIFF / WebP by the suffix) atomically,
never overwriting an existing file without ``force``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from codec.errors import CodecError
from codec.files import atomic_write, check_readable, check_writable

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "read_image", "to_image_channels", "write_image"]

MAX_PIXELS = 8192 * 8192  # 64 Mpixel: 768 MiB as float32 RGB
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".webp": "WEBP", "": "PNG"}
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError,
                  Image.DecompressionBombError)
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's RGB -> L


def read_image(path: str | os.PathLike, channels: int | None = None) -> torch.Tensor:
    """The image at ``path`` as float32 [C, H, W] in [0, 1]; C = ``channels`` (1 or 3), or
    by default 1 for grey images and 3 for all others."""
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels}")
    p = check_readable(path)
    try:
        with warnings.catch_warnings():  # our own MAX_PIXELS check replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                _check_size(im, p)
                with _strict_truncation():
                    im.load()
                grey = im.mode in _GREY_MODES
                x = _to_float(_upright(im), p)
    except UnidentifiedImageError:
        raise CodecError(f"Image file '{p}' is not an image in a format Pillow can read.") from None
    except Image.DecompressionBombError:
        raise CodecError(f"Image file '{p}' claims more than {MAX_PIXELS} pixels; refusing to decode it.") from None
    except _DECODE_ERRORS as e:
        reason = " ".join(str(e).split()).rstrip(".") or type(e).__name__
        raise CodecError(f"Image file '{p}' is truncated or corrupt ({reason}).") from None
    return to_image_channels(x, channels or (1 if grey else 3))


def to_image_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, ...] grey (C=1) or RGB (C=3) -> [channels, ...]: BT.601 luma, or grey repeated."""
    c = x.shape[0]
    if c == channels:
        return x
    if c == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(3, *([1] * (x.dim() - 1)))
        return (x * weights).sum(0, keepdim=True)
    if c == 1 and channels == 3:
        return x.expand(3, *x.shape[1:]).clone()
    raise ValueError(f"cannot convert {c} channels to {channels}; only grey (1) and RGB (3) are supported")


def write_image(path: str | os.PathLike, image: torch.Tensor, force: bool = False) -> None:
    """Write [C, H, W] (C = 1 or 3, values clamped to [0, 1], rounded to 8 bits) to ``path``
    in the format of its suffix (PNG when it has none), atomically."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be a tensor [C, H, W] with C = 1 or 3, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    p = check_writable(path, force)
    image_format = _WRITE_FORMATS.get(p.suffix.lower())
    if image_format is None:
        raise CodecError(f"Cannot write image '{p}': unknown suffix '{p.suffix}' (use one of "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}).")
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    with atomic_write(p, force) as tmp:
        try:
            Image.fromarray(np.ascontiguousarray(array)).save(tmp, format=image_format, **options)
        except OSError as e:
            raise CodecError(f"Cannot write image '{p}' ({e.strerror or e}).") from None


def _check_size(im: Image.Image, p: os.PathLike) -> None:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise CodecError(f"Image file '{p}' has a zero size ({width} x {height}).")
    if width * height > MAX_PIXELS:
        raise CodecError(f"Image file '{p}' is {width} x {height} pixels, more than the limit of "
                         f"{MAX_PIXELS} pixels; refusing to decode it.")


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
    """Make a truncated file fail to load even where the process set Pillow's
    LOAD_TRUNCATED_IMAGES (which would fill the missing part with grey)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (unchanged when the EXIF data is unreadable)."""
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:
        return im


def _to_float(im: Image.Image, p: os.PathLike) -> torch.Tensor:
    """A loaded image of any supported mode -> float32 [1 or 3, H, W] in [0, 1], alpha on white."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(im).astype(np.float64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise CodecError(f"Image file '{p}' holds 32-bit integer pixels outside the 16-bit range; "
                             "such images are not supported.")
        return torch.from_numpy(values / 65535).float()[None]
    if mode == "P":
        mode, im = ("RGBA", im.convert("RGBA")) if "transparency" in im.info else ("RGB", im.convert("RGB"))
    elif mode in ("PA", "RGBa", "RGBX", "CMYK", "YCbCr", "La", "1"):
        target = {"PA": "RGBA", "RGBa": "RGBA", "La": "LA", "1": "L"}.get(mode, "RGB")
        mode, im = target, im.convert(target)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise CodecError(f"Image file '{p}' has the unsupported pixel mode '{mode}'.")
    x = torch.from_numpy(np.array(im, dtype=np.float32) / 255)
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    if mode in ("LA", "RGBA"):
        color, alpha = x[:-1], x[-1:]
        x = color * alpha + (1 - alpha)
    return x.contiguous()
