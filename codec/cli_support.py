"""What every `codec` subcommand shares: one-sentence errors, the consoles, common options and
the cached model loader (see cli.py and slm/cli.py)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer
from rich.console import Console

from .errors import CodecError

if TYPE_CHECKING:
    from .tokens import TokenSpec

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    stderr.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def cli_errors(command: Callable) -> Callable:
    """Turn library errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CodecError as e:
            raise fail(str(e)) from None
        except KeyboardInterrupt:
            raise fail("interrupted.", 130) from None
        except Exception as e:  # noqa: BLE001 - last resort: never show a traceback to users
            if os.environ.get("CODEC_DEBUG"):
                raise
            raise fail(f"unexpected {type(e).__name__}: {e} (set CODEC_DEBUG=1 for details).", 2) from None

    return wrapper


@dataclass
class _LoadedModel:
    """A model with the name and fingerprint that .cdc files record."""

    model: object
    name: str  # a registered name, or a model folder's name (never a local path)
    path: Path | None  # the folder or file it was loaded from, if given as a path
    fingerprint: str


@functools.lru_cache(maxsize=4)
def load_model(spec: Optional[str], device: str) -> _LoadedModel:
    from codec.audio import AudioCodec, model_fingerprint
    from codec.audio.inference import prepare_for_inference
    from codec.audio.registry import DEFAULT_MODEL, load_tokenizer
    from codec.devices import parse_device

    model = load_tokenizer(spec, parse_device(device))
    fingerprint = model_fingerprint(model)
    if isinstance(model, AudioCodec):  # weight norm folded once: the same codes and (to rounding) audio, faster
        prepare_for_inference(model)
    name = spec or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.exists():  # files record the model's name, not where it lies on this machine
        from codec.audio.pretrained import entry_for_file

        path = path.resolve()
        entry = entry_for_file(path) if path.is_file() else None
        return _LoadedModel(model, entry.name if entry else path.name, path, fingerprint)
    return _LoadedModel(model, name, None, fingerprint)


Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
Device = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:N or auto.")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", show_default=False,
                                               help="Output file for one input, or a folder for several.")]
Workers = Annotated[int, typer.Option(min=1, help="Files coded at once, each in its own process.")]


def levels_for(spec: TokenSpec, bandwidth: Optional[float], n_q: Optional[int]) -> int:
    """Codebook levels for --bandwidth or --n-q (default: all) of a model's full TokenSpec."""
    if bandwidth is not None and n_q is not None:
        raise CodecError("Pass either --bandwidth or --n-q, not both.")
    if n_q is not None and not 1 <= n_q <= spec.n_q:
        raise CodecError(f"--n-q must be between 1 and {spec.n_q} for this model, got {n_q}.")
    if bandwidth is None:
        return n_q or spec.n_q
    try:
        return spec.n_q_for_kbps(bandwidth)
    except ValueError as e:
        available = ", ".join(f"{b:g}" for b in spec.bandwidths())
        raise CodecError(f"Cannot use that bitrate: {e} (available: {available} kbps).") from None


def model_for_file(src: Path, model: Optional[str], device: str, name: str, fingerprint: str, modality: str):
    """The model to decode ``src`` with: ``model``, else the one the file names; a CodecError unless it is
    a ``modality`` tokenizer with the file's fingerprint."""
    try:
        loaded = load_model(model or name, device)
    except CodecError as e:
        raise CodecError(f"Cannot decode {src}: its model {name!r} cannot be loaded here "
                         f"({str(e).rstrip('.')}); pass --model with that model's name or folder.") from None
    found = loaded.model.token_spec.modality
    if found != modality:
        raise CodecError(f"{src} holds {modality} tokens, but {loaded.name} is an {found} tokenizer.")
    if loaded.fingerprint != fingerprint:
        raise CodecError(f"{src} was made by a different model (fingerprint {fingerprint}) "
                         f"than {loaded.name} (fingerprint {loaded.fingerprint}).")
    return loaded
