"""Images and videos of any size to tokens and back, through a tokenizer that takes fixed shapes.

Convolutional tokenizers code any multiple of their downsampling: the input is padded (edge pixels
repeated) and the decoded result cropped. Tokenizers of one size (TiTok, multi-scale) code the image
resized to that size; the result is resized back. Videos are padded in time, by repeating the last
frame, to the 1 + k x (temporal downsampling) frames a causal video tokenizer takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CodecError
from .bitstream import VisualHeader


@dataclass(frozen=True)
class CodedVisual:
    """Codes and the header that lets them be decoded: codes [Q, h, w] (image) or [Q, T', h, w] (video)."""

    header: VisualHeader
    codes: Tensor


def _fixed_size(model: nn.Module) -> int | None:
    """The one side a tokenizer codes, or None if it codes any multiple of its downsampling."""
    return None if model.config.architecture == "conv" else model.config.image_size


def _spatial_multiple(model: nn.Module) -> int:
    config = model.config
    return config.spatial_downsample if model.token_spec.modality == "video" else config.downsample


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    """x [..., H, W] padded at the bottom and right (edge pixels repeated) to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    flat = x.flatten(0, -3)[None]  # [1, N, H, W]: replicate padding of the last two axes
    return F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")[0].unflatten(0, x.shape[:-2])


def _check_channels(model: nn.Module, channels: int, what: str) -> None:
    if channels != model.config.channels:
        raise CodecError(f"The {what} has {channels} channels but the model codes {model.config.channels}.")


@torch.inference_mode()
def encode_image(model: nn.Module, image: Tensor, name: str, fingerprint: str) -> CodedVisual:
    """An image [C, H, W] in [0, 1] -> its codes and header (``name``/``fingerprint`` identify the model)."""
    _check_channels(model, image.shape[0], "image")
    height, width = image.shape[-2:]
    size = _fixed_size(model)
    x = image[None].to(next(model.parameters()).device)
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        x = _pad_to(x, _spatial_multiple(model))
    codes = model.encode(x)[0].cpu()  # [Q, h, w]
    spec = model.token_spec
    header = VisualHeader(name, fingerprint, image.shape[0], height, width, spec.codebook_sizes,
                          tuple(codes.shape[-2:]), resized=size is not None)
    return CodedVisual(header, codes)


@torch.inference_mode()
def encode_video(model: nn.Module, video: Tensor, fps: float, name: str, fingerprint: str) -> CodedVisual:
    """A video [C, T, H, W] in [0, 1] at ``fps`` -> its codes [Q, T', h, w] and header."""
    _check_channels(model, video.shape[0], "video")
    frames, height, width = video.shape[1:]
    step = model.config.temporal_downsample
    extra = -(frames - 1) % step
    x = torch.cat([video, video[:, -1:].expand(-1, extra, -1, -1)], dim=1) if extra else video
    x = _pad_to(x, _spatial_multiple(model))[None].to(next(model.parameters()).device)
    codes = model.encode(x)[0].cpu()  # [Q, T', h, w]
    header = VisualHeader(name, fingerprint, video.shape[0], height, width, model.token_spec.codebook_sizes,
                          tuple(codes.shape[-2:]), frames, float(fps), codes.shape[1], video=True)
    return CodedVisual(header, codes)


def check_model(model: nn.Module, header: VisualHeader, source: str) -> None:
    """CodecError unless ``model`` decodes what ``header`` describes into its stated size."""
    spec = model.token_spec
    modality = "video" if header.video else "image"
    if spec.modality != modality:
        raise CodecError(f"{source} holds {modality} tokens but the model is a {spec.modality} tokenizer.")
    if header.channels != model.config.channels or tuple(header.codebook_sizes) != spec.codebook_sizes[:header.n_q]:
        raise CodecError(f"{source} does not match the model's channels or codebooks.")
    size = None if header.video else _fixed_size(model)
    if size is not None:
        expected = tuple(spec.grid)
        if header.height > 8 * size or header.width > 8 * size:
            raise CodecError(f"{source} claims a {header.height}x{header.width} image, more than 8x the "
                             f"{size}x{size} the model codes.")
    else:
        m = _spatial_multiple(model)
        expected = (-(-header.height // m), -(-header.width // m))
    if tuple(header.grid) != expected:
        raise CodecError(f"{source} has a {header.grid[0]}x{header.grid[1]} token grid, but a "
                         f"{header.height}x{header.width} {modality} gives {expected[0]}x{expected[1]} with this model.")
    if header.video:
        step = model.config.temporal_downsample
        if header.token_frames != 1 + -(-(header.frames - 1) // step):
            raise CodecError(f"{source} has {header.token_frames} token frames for {header.frames} frames; this "
                             f"model makes {1 + -(-(header.frames - 1) // step)}.")


@torch.inference_mode()
def decode_visual(model: nn.Module, coded: CodedVisual) -> Tensor:
    """Codes -> the image [C, H, W] or video [C, T, H, W] in [0, 1] at the original size."""
    header = coded.header
    y = model.decode(coded.codes[None].to(next(model.parameters()).device))[0].float().cpu()
    if header.resized:
        return F.interpolate(y[None], size=(header.height, header.width), mode="bilinear", antialias=True,
                             align_corners=False)[0].clamp(0, 1)
    if header.video:
        y = y[:, :header.frames]
    return y[..., :header.height, :header.width]
