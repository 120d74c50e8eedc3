"""Safe files: readability checks before work, atomic writes that never leave a partial file.

Every writer of the toolkit (audio, .cdc files, model folders, checkpoints, manifests, eval
reports) goes through ``atomic_write``: the data is written to a temporary file in the
target's folder and moved onto the target only on success, so a crash or an error leaves
the previous file (or none), never a half-written one. Existing files are only replaced
with ``force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from .errors import CodecError


def files_under(root: Path, suffixes: frozenset[str] | set[str]) -> list[Path]:
    """The files under ``root`` (recursively, sorted) whose suffix, in any case, is one of ``suffixes``."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def check_readable(path: str | os.PathLike) -> Path:
    """Check that ``path`` is an existing, readable, non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise CodecError(f"Input file '{p}' does not exist.")
    if p.is_dir():
        raise CodecError(f"Input path '{p}' is a directory, not a file.")
    try:
        with open(p, "rb") as f:
            first = f.read(1)
    except PermissionError:
        raise CodecError(f"Input file '{p}' cannot be read (permission denied).") from None
    except OSError as e:
        raise CodecError(f"Input file '{p}' cannot be read ({e.strerror or e}).") from None
    if not first:
        raise CodecError(f"Input file '{p}' is empty.")
    return p


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Check, before any expensive work, that ``path`` can be (over)written."""
    p = Path(path)
    if p.is_dir():
        raise CodecError(f"Output path '{p}' is a directory, not a file.")
    if p.exists() and not force:
        raise CodecError(f"Output file '{p}' already exists; pass --force to overwrite it.")
    parent = p.parent
    if not parent.is_dir():
        raise CodecError(f"Cannot write '{p}': directory '{parent}' does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CodecError(f"Cannot write '{p}': directory '{parent}' is not writable.")
    return p


@contextlib.contextmanager
def atomic_write(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``, moved onto ``path`` only on success;
    on any exception the temporary file is removed and the exception re-raised."""
    p = check_writable(path, force)
    tmp = p.parent / f".{p.name[:200]}.{secrets.token_hex(8)}.tmp"
    try:  # os.open (not mkstemp) so the final file gets the usual umask permissions
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise CodecError(f"Cannot write '{p}' ({e.strerror or e}).") from None
    try:
        yield tmp
        if p.exists() and not force:  # appeared while we were writing
            raise CodecError(f"Output file '{p}' already exists; pass --force to overwrite it.")
        try:
            os.replace(tmp, p)
        except OSError as e:
            raise CodecError(f"Cannot write '{p}' ({e.strerror or e}).") from None
    finally:
        tmp.unlink(missing_ok=True)


def read_manifest(path: Path, what: str = "Manifest") -> list[dict]:
    """The entries of a JSONL manifest: one JSON object per non-blank line, each with a non-empty
    string ``path`` (relative to the manifest's folder); CodecError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CodecError(f"{what} {path} cannot be read as UTF-8 JSON lines ({e}).") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry.get("path"), str) or not entry["path"]:
                raise TypeError
        except (json.JSONDecodeError, AttributeError, TypeError, RecursionError):
            raise CodecError(f"Line {number} of manifest {path} is not a JSON object with a \"path\".") from None
        entries.append(entry)
    return entries
