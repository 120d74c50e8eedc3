"""Every quantizer kind on image [B, D, H, W] and video [B, D, T, H, W] grids, and the rule that image
and video modules reach quantizers only through ``codec.quantization``."""

from __future__ import annotations

import ast
import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from codec.quantization import QuantizerConfig, build_quantizer

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "ema": QuantizerConfig(kind="ema", n_q=3, codebook_size=16, kmeans_iters=2),
    "factorized": QuantizerConfig(kind="factorized", n_q=3, codebook_size=16, codebook_dim=4),
    "fsq": QuantizerConfig(kind="fsq", fsq_levels=(5, 3, 4)),
    "lfq": QuantizerConfig(kind="lfq", lfq_bits=5),
}
GRIDS = [(4, 5), (3, 4, 5)]  # image (H, W), video (T, H, W)
DIM = 6
SUBMODULES = {p.stem for p in (ROOT / "codec" / "quantization").glob("*.py")} - {"__init__"}


def trained(kind: str) -> torch.nn.Module:
    """A quantizer after two training passes (EMA codebooks: k-means, then an update), in eval mode."""
    torch.manual_seed(0)
    quantizer = build_quantizer(DIM, KINDS[kind]).train()
    for _ in range(2):
        quantizer(torch.randn(4, DIM, 40))
    return quantizer.eval()


def fields(out: object, axes: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """A QuantizerOutput's tensors; with ``axes`` the per-position ones ([..., N]) reshaped to them."""
    values = {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if getattr(out, f.name) is not None}
    per_position = {"quantized", "codes", "first_level"}
    return {k: v.unflatten(-1, axes) if axes and k in per_position else v for k, v in values.items()}


@pytest.mark.parametrize("grid", GRIDS, ids=["image", "video"])
@pytest.mark.parametrize("kind", KINDS)
def test_eval_codes_encode_decode_on_grids(kind: str, grid: tuple[int, ...]) -> None:
    quantizer = trained(kind)
    x = torch.randn(2, DIM, *grid)
    with torch.no_grad():
        out = quantizer(x)
    n_q = len(KINDS[kind].codebook_sizes)
    assert out.codes.shape == (2, n_q, *grid) and out.codes.dtype == torch.int64
    assert out.quantized.shape == x.shape
    sizes = torch.tensor(KINDS[kind].codebook_sizes).view(1, -1, *[1] * len(grid))
    assert bool((out.codes >= 0).all()) and bool((out.codes < sizes).all())
    assert torch.equal(quantizer.encode(x), out.codes)
    torch.testing.assert_close(quantizer.decode(out.codes), out.quantized, atol=1e-5, rtol=0)
    assert out.usage.shape == out.perplexity.shape == (n_q,)


@pytest.mark.parametrize("grid", GRIDS, ids=["image", "video"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_grid_quantizes_as_its_flattened_positions(kind: str, grid: tuple[int, ...]) -> None:
    """Positions are independent: the grid's codes, outputs and losses are those of the 1-D view."""
    quantizer = trained(kind)
    x = torch.randn(2, DIM, *grid)
    flat = x.flatten(2)
    codes = quantizer.encode(x)
    assert torch.equal(codes, quantizer.encode(flat).unflatten(-1, grid))
    assert torch.equal(quantizer.decode(codes), quantizer.decode(codes.flatten(2)).unflatten(-1, grid))
    with torch.no_grad():
        on_grid, on_line = fields(quantizer(x)), fields(quantizer(flat), grid)
    assert on_grid.keys() == on_line.keys()
    for name, value in on_grid.items():
        assert torch.equal(value, on_line[name]), name
    # also in training: same codes, losses and learned state from the same start
    twin = copy.deepcopy(quantizer).train()
    quantizer.train()
    torch.manual_seed(1)
    on_grid = fields(quantizer(x))
    torch.manual_seed(1)
    on_line = fields(twin(flat), grid)
    for name, value in on_grid.items():
        torch.testing.assert_close(value, on_line[name], atol=1e-6, rtol=0, msg=name)
    for (name, value), (_, twin_value) in zip(quantizer.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(value, twin_value), name


# --- image and video modules import quantizers only through codec.quantization -----------------


def visual_modules() -> list[Path]:
    return sorted(p for folder in ("image", "video") for p in (ROOT / "codec" / folder).rglob("*.py"))


def quantization_violations(source: str, package: tuple[str, ...]) -> list[str]:
    """Quantizer classes defined in the module ``source`` of ``package`` (e.g. ("codec", "image")) and its
    imports of codec.quantization's submodules."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and ("Quantizer" in node.name or "Codebook" in node.name):
            found.append(f"defines class {node.name}")
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] + [f"{module}.{alias.name}" for alias in node.names
                                if module == "codec" or (module == "codec.quantization" and alias.name in SUBMODULES)]
        found += [f"imports {name}" for name in names if name.startswith("codec.quantization.")]
    return found


def test_visual_modules_reach_quantizers_only_through_the_package() -> None:
    modules = visual_modules()
    assert ROOT / "codec" / "image" / "multiscale.py" in modules
    violations = {str(p.relative_to(ROOT)): quantization_violations(p.read_text(), p.relative_to(ROOT).parts[:-1])
                  for p in modules}
    assert {name: found for name, found in violations.items() if found} == {}


def test_the_import_rule_catches_submodule_imports_and_quantizer_classes() -> None:
    allowed = ["from ..quantization import build_quantizer", "from codec.quantization import QuantizerConfig",
               "import codec.quantization", "from .config import ImageTokenizerConfig"]
    forbidden = {"from ..quantization.fsq import FiniteScalarQuantizer": "imports codec.quantization.fsq",
                 "from codec.quantization.metrics import codebook_metrics": "imports codec.quantization.metrics",
                 "import codec.quantization.vq": "imports codec.quantization.vq",
                 "from ..quantization import fsq": "imports codec.quantization.fsq",
                 "class MyCodebook:\n    pass": "defines class MyCodebook"}
    for source in allowed:
        assert quantization_violations(source, ("codec", "image")) == [], source
    for source, violation in forbidden.items():
        assert quantization_violations(source, ("codec", "video")) == [violation], source
    assert quantization_violations("from ...quantization.fsq import levels", ("codec", "video", "sub")) == [
        "imports codec.quantization.fsq"]
