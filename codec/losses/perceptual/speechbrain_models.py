"""Load a speechbrain pretrained embedder from a local folder (or, when online, from the Hub).

Two module layouts (the ``modules:`` of the folder's ``hyperparams.yaml``) are understood:

* encoder layout, as ``EncoderClassifier.encode_batch`` uses it: ``compute_features``,
  ``mean_var_norm`` and ``embedding_model`` (``speechbrain/spkrec-ecapa-voxceleb``, xvector and
  resnet speaker models, and emotion classifiers trained with speechbrain's ECAPA IEMOCAP recipe);
* wav2vec2 layout, as the ``CustomEncoderWav2vec2Classifier`` of
  ``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` uses it: ``wav2vec2`` then ``avg_pool``.
  The real model builds a Hugging Face wav2vec2 and so needs ``transformers`` and the
  ``facebook/wav2vec2-base`` files in the local Hugging Face cache.

Only the checkpoints of these modules are loaded; classifier heads and label encoders are not.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from codec.errors import CodecError

ENCODER_MODULES = ("compute_features", "mean_var_norm", "embedding_model")
WAV2VEC2_MODULES = ("wav2vec2", "avg_pool")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class SpeechBrainEmbedder(nn.Module):
    """The embedding path of a speechbrain model: ``forward(wav [N, T]) -> [N, D]``.

    Attributes: ``sample_rate`` (the model's input rate, from ``sample_rate`` in the yaml,
    16 kHz if absent) and ``layout`` ("encoder" or "wav2vec2").
    """

    def __init__(self, modules: dict[str, nn.Module], sample_rate: int) -> None:
        super().__init__()
        self.layout = "encoder" if all(k in modules for k in ENCODER_MODULES) else "wav2vec2"
        names = ENCODER_MODULES if self.layout == "encoder" else WAV2VEC2_MODULES
        self.mods = nn.ModuleDict({k: modules[k] for k in names})
        self.sample_rate = sample_rate

    def forward(self, wav: Tensor) -> Tensor:
        lens = torch.ones(wav.shape[0], device=wav.device)
        if self.layout == "encoder":
            feats = self.mods["compute_features"](wav)
            feats = self.mods["mean_var_norm"](feats, lens)
            emb = self.mods["embedding_model"](feats, lens)
        else:
            emb = self.mods["avg_pool"](self.mods["wav2vec2"](wav), lens)
        return emb.reshape(wav.shape[0], -1)


def _missing_message(source: str) -> str:
    return (
        f"speechbrain model '{source}' is not available offline; download it on a connected "
        "machine and pass its local folder (it must contain hyperparams.yaml and the checkpoint "
        "files it names, e.g. embedding_model.ckpt)."
    )


def _download(source: str, savedir: str | None) -> Path:
    """Fetch a Hub model's yaml and checkpoints with speechbrain's own fetcher into ``savedir``."""
    target = Path(savedir) if savedir else Path.home() / ".cache" / "codec" / "speechbrain" / source.replace("/", "--")
    try:
        from speechbrain.inference.interfaces import Pretrained, pretrained_from_hparams

        pretrained_from_hparams(Pretrained, source=source, savedir=str(target), download_only=True)
    except ImportError as exc:
        raise CodecError(f"speechbrain model '{source}' needs the Python package '{exc.name}'; install it.") from exc
    except Exception as exc:  # offline (no cached copy), unknown repository, ...
        raise CodecError(_missing_message(source)) from exc
    return target


def _checkpoint_file(folder: Path, pretrainer: object, name: str) -> Path:
    paths = getattr(pretrainer, "paths", {}) or {}
    candidates = [folder / Path(str(paths[name])).name] if name in paths else []
    candidates.append(folder / f"{name}.ckpt")
    for path in candidates:
        if path.is_file():
            return path
    raise CodecError(f"speechbrain folder {folder} has no checkpoint for '{name}' (looked for {candidates[0].name}).")


def load_speechbrain_embedder(source: str, savedir: str | None = None) -> SpeechBrainEmbedder:
    """Build the modules declared in ``<folder>/hyperparams.yaml`` and load their checkpoints.

    ``source`` is a local folder, or a Hub id such as ``speechbrain/spkrec-ecapa-voxceleb``
    (downloaded into ``savedir`` when a network is available; a CodecError otherwise).
    """
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if not _HUB_ID.match(source) or folder.exists():
            raise CodecError(f"speechbrain model folder {source} does not exist.")
        folder = _download(source, savedir)
    yaml_path = folder / "hyperparams.yaml"
    if not yaml_path.is_file():
        raise CodecError(f"{folder} is not a speechbrain model folder: it has no hyperparams.yaml.")
    try:
        from hyperpyyaml import load_hyperpyyaml
        from speechbrain.utils.checkpoints import DEFAULT_LOAD_HOOKS, DEFAULT_TRANSFER_HOOKS, get_default_hook

        with open(yaml_path, encoding="utf-8") as f:
            hparams = load_hyperpyyaml(f, {"pretrained_path": str(folder)}, overrides_must_match=False)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CodecError(f"could not build the speechbrain model of {yaml_path}: {reason}") from exc
    modules = dict(hparams.get("modules") or {})
    if not (all(k in modules for k in ENCODER_MODULES) or all(k in modules for k in WAV2VEC2_MODULES)):
        raise CodecError(
            f"{yaml_path} declares neither compute_features/mean_var_norm/embedding_model nor "
            "wav2vec2/avg_pool modules, so it is not a supported speaker or emotion embedder."
        )
    embedder = SpeechBrainEmbedder(modules, int(hparams.get("sample_rate", 16000)))
    pretrainer = hparams.get("pretrainer")
    wanted = {id(m) for m in embedder.mods.values()}
    main = embedder.mods["embedding_model" if embedder.layout == "encoder" else "wav2vec2"]
    loaded_main = False
    for name, obj in dict(getattr(pretrainer, "loadables", {}) or {}).items():
        inside = {id(m) for m in obj.modules()} if isinstance(obj, nn.Module) else {id(obj)}
        if not inside & wanted:
            continue  # classifier heads, label encoders, embedding normalisers: not needed
        path = _checkpoint_file(folder, pretrainer, name)
        hook = getattr(pretrainer, "custom_hooks", {}).get(name) or get_default_hook(obj, DEFAULT_TRANSFER_HOOKS)
        if hook is not None:
            hook(obj, path)
        else:
            get_default_hook(obj, DEFAULT_LOAD_HOOKS)(obj, path, False)
        loaded_main = loaded_main or id(main) in inside
    if not loaded_main:
        name = main.__class__.__name__
        raise CodecError(f"{yaml_path} has no pretrainer entry that loads the weights of its {name}.")
    return embedder
