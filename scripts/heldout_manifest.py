"""Write the clips a recipe holds back from training as a `codec eval --data` manifest.

The held-back (validation) clips are chosen deterministically from the recipe's data settings,
so this needs only the recipe and the corpus, not a training run. Each line is
{"path": absolute path, "kind": group}; with devspeech the group is its manifest's "kind"
(real / tts), so `codec eval` reports real and synthetic speech apart, and "text" is the clip's
transcript where devspeech has one (`--metric wer` then scores against it).

    python scripts/heldout_manifest.py recipes/devspeech/codec16k.yaml \
        --data-dir ../shared/data/devspeech -o build/heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from codec.files import atomic_write
from codec.data.manifests import prepare_manifests
from codec.errors import CodecError
from codec.train import load_train_config, read_recipe


def devspeech_entries(root: Path) -> dict[str, dict[str, str]]:
    """Recording id (path without suffix) -> {"kind": "real" / "tts"[, "text": transcript]} from
    devspeech's manifest.jsonl."""
    entries = {}
    for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            text = str(entry.get("text") or "").strip()
            entries[str(Path(entry["path"]).with_suffix("").as_posix())] = {
                "kind": str(entry.get("kind", "all")), **({"text": text} if text else {})}
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="Overwrite the output file.")
    args = parser.parse_args()
    try:
        data = load_train_config(read_recipe(args.recipe), data_dir=args.data_dir).data
        with tempfile.TemporaryDirectory() as tmp:
            _, valid = prepare_manifests(data, Path(tmp))
        root = Path(data.data_dir).resolve()
        entries = devspeech_entries(root) if data.corpus == "devspeech" else {}
        lines = [json.dumps({"path": str(Path(cut.recording.sources[0].source).resolve()),
                             **entries.get(cut.recording_id, {"kind": "all"})}) for cut in valid]
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.output, args.force) as tmp_file:
            tmp_file.write_text("\n".join(lines) + "\n")
    except CodecError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {len(lines)} held-back clips to {args.output}")


if __name__ == "__main__":
    main()
