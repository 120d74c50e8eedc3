"""Packaging beyond pyproject.toml: the top-level recipes/ folder is installed as codec/recipes,
so an installed (non-editable) package still finds its training recipes."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["codec*", "slm*"]), "codec.recipes"],
    package_dir={"codec.recipes": "recipes"},
    package_data={"codec": ["audio/bundled/*/*", "image/bundled/*/*", "video/bundled/*/*", "eval/bundled/*/*"], "codec.recipes": ["*/*.yaml", "*/README.md"]},
)
