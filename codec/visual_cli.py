"""The image and video side of `codec encode`, `decode`, `info` and `eval` (cli.py dispatches here by
the model's modality or the .cdc file's version)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.progress import Progress

from .cli_support import load_model as _load_model, model_for_file, stderr, stdout
from .errors import CodecError


def encode_visual_file(src: Path, dst: Path, model: Optional[str], device: str, n_q: int, force: bool) -> None:
    from codec.image.bitstream import write_visual_cdc
    from codec.image.coding import encode_image, encode_video

    loaded = _load_model(model, device)
    tokenizer = loaded.model
    full = tokenizer.token_spec.n_q
    tokenizer.set_num_codebooks(n_q)
    try:
        if tokenizer.token_spec.modality == "image":
            from codec.image.io import read_image

            coded = encode_image(tokenizer, read_image(src, tokenizer.config.channels), loaded.name,
                                 loaded.fingerprint)
        else:
            from codec.video.io import read_video

            video, fps = read_video(src, tokenizer.config.channels)
            coded = encode_video(tokenizer, video, fps, loaded.name, loaded.fingerprint)
    finally:
        tokenizer.set_num_codebooks(full)  # the loaded model is shared (cached) by later calls
    write_visual_cdc(dst, coded.header, coded.codes, force)


def decode_visual_file(src: Path, dst: Path, model: Optional[str], device: str, force: bool) -> None:
    from codec.image.bitstream import read_visual_cdc
    from codec.image.coding import CodedVisual, check_model, decode_visual

    header, codes = read_visual_cdc(src)
    modality = "video" if header.video else "image"
    loaded = model_for_file(src, model, device, header.model, header.model_fingerprint, modality)
    check_model(loaded.model, header, f"Input file '{src}'")
    decoded = decode_visual(loaded.model, CodedVisual(header, codes))
    if header.video:
        from codec.video.io import write_video

        write_video(dst, decoded, header.fps, force)
    else:
        from codec.image.io import write_image

        write_image(dst, decoded, force)


def visual_info_rows(path: Path) -> list[tuple[str, str]]:
    from codec.image.bitstream import header_bytes, read_visual_cdc

    header, _ = read_visual_cdc(path)
    size = path.stat().st_size
    pixels = header.height * header.width
    nominal = header.positions * sum(header.code_bits)
    rows = [
        ("file", str(path)),
        ("format", ".cdc version 3 (binary header, image/video tokens)"),
        ("model", header.model),
        ("model fingerprint", header.model_fingerprint),
        ("content", f"{'video' if header.video else 'image'} {header.width}x{header.height}, {header.channels} "
                    f"channel{'s' if header.channels > 1 else ''}"
                    + (f", {header.frames} frames at {header.fps:g} fps" if header.video else "")
                    + (" (coded resized)" if header.resized else "")),
        ("tokens", f"{header.token_frames} x " * header.video + f"{header.grid[0]}x{header.grid[1]} grid, "
                   f"{header.n_q} level{'s' if header.n_q > 1 else ''} "
                   f"({', '.join(map(str, header.codebook_sizes))} codes; {', '.join(map(str, header.code_bits))} bits)"),
        ("header", f"{header_bytes(header) - 4} bytes, then {header.payload_bytes} bytes of codes and a 4-byte checksum"),
    ]
    if header.video:
        seconds = header.frames / header.fps
        rows += [("nominal bitrate", f"{nominal / seconds / 1000:.3f} kbps ({nominal} bits in {seconds:.3f} s)"),
                 ("actual bitrate", f"{8 * size / seconds / 1000:.3f} kbps ({size} bytes)")]
    else:
        rows += [("nominal bits", f"{nominal} bits, {nominal / pixels:.4f} bits per pixel"),
                 ("actual bits", f"{8 * size} bits ({size} bytes), {8 * size / pixels:.4f} bits per pixel")]
    return rows


def evaluate_visual(loaded: list, data: Path, out: Path, max_items: Optional[int], bandwidth, baseline, metric) -> None:
    """``codec eval`` for image and video tokenizers: JPEG/WebP or H.264/VP9 at equal bits."""
    from codec.devices import apply_threads
    from codec.eval.visual_eval import NamedTokenizer, run_visual_eval

    if bandwidth or baseline or metric:
        raise CodecError("For image and video tokenizers every bitrate, the classic codecs (JPEG, WebP; H.264, VP9) "
                         "and every metric (PSNR, SSIM, MS-SSIM) are evaluated: drop --bandwidth, --baseline and "
                         "--metric.")
    apply_threads()
    tokenizers = [NamedTokenizer("/".join(m.path.parts[-2:]) if m.path is not None else m.name, m.model,
                                 m.fingerprint) for m in loaded]
    with Progress(console=stderr) as progress:
        def advance(total: int):
            task = progress.add_task("coding", total=total)
            return lambda: progress.advance(task)

        table = run_visual_eval(tokenizers, data, out, max_items, advance, force=True)
    stdout.print(table, markup=False, soft_wrap=True)
    stdout.print(f"wrote {out}/results.json, results.csv, results.md, plot.png, grid.png", markup=False)
