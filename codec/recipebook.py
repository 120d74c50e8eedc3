"""The shipped training recipes, found in a source checkout and in an installed package alike.

A checkout keeps them in ``recipes/<dataset>/*.yaml`` at its root; a wheel installs that folder
as ``codec/recipes`` (see setup.py). ``codec train`` takes a recipe's path, or the name of a
shipped one: ``devspeech/codec16k``, ``recipes/devspeech/codec16k.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CodecError

_PACKAGE = Path(__file__).resolve().parent  # codec/


def recipes_dir() -> Path | None:
    """The folder of shipped recipes: codec/recipes when installed, else recipes/ of the checkout."""
    for candidate in (_PACKAGE / "recipes", _PACKAGE.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    return None


def shipped_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ['devspeech/codec16k', ...]."""
    root = recipes_dir()
    return sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.yaml")) if root else []


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, else a shipped recipe named 'dataset/name' (optionally with a
    leading 'recipes/' and a '.yaml' suffix)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    parts = path.with_suffix(".yaml").parts
    root = recipes_dir()
    if root is not None and len(parts) >= 2 and (root / parts[-2] / parts[-1]).is_file():
        return root / parts[-2] / parts[-1]
    known = ", ".join(shipped_recipes()) or "none"
    raise CodecError(f"Recipe {name_or_path} does not exist (shipped recipes: {known}).")
