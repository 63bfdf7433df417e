"""Installing a trained adapter: convert a PEFT folder into adapters/<name>/adapter.gguf plus its
manifest. It lives in training (not runtime) because it needs the LoRA converter; the runtime
only finds and checks adapters, so it never imports training.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from agx.config.schema import AgxConfig
from agx.runtime.adapters import ADAPTER_FILE, adapters_dir, file_sha256, write_manifest
from agx.runtime.gguf_info import read_gguf_info
from agx.training.convert_lora import ConversionError, convert_peft_to_gguf

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _training_mix_sha256(peft_dir: Path) -> str | None:
    """The data sha256 of the mix scripts/train.py recorded in training_config.json, if any."""
    try:
        value = json.loads((peft_dir / "training_config.json").read_text(encoding="utf-8")).get("mix_data_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def install_adapter(
    peft_dir: Path,
    base_gguf: Path,
    name: str,
    config: AgxConfig,
    *,
    outtype: str = "f32",
    dataset: Path | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    force: bool = False,
    hash_base: bool = True,
):
    """Convert a PEFT adapter into adapters/<name>/adapter.gguf and write its manifest.

    Returns (folder, ConvertResult). Raises ConversionError for bad input.
    """
    if not _NAME_OK.match(name):
        raise ConversionError(f"adapter name {name!r}: use letters, digits, '.', '_' and '-' (e.g. agenix-delta-v1)")
    folder = adapters_dir(config) / name
    if (folder / ADAPTER_FILE).exists() and not force:
        raise ConversionError(f"adapter {name!r} already exists at {folder} (use --force to replace it)")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = convert_peft_to_gguf(peft_dir, base_gguf, folder / ADAPTER_FILE, outtype, name=name)
    except ConversionError:
        if created:  # leave no empty adapter folder behind for `list` to trip over
            folder.rmdir()
        raise
    base_info = read_gguf_info(base_gguf)
    peft_cfg = json.loads((Path(peft_dir) / "adapter_config.json").read_text())
    manifest = {
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base_model": base_info.name or Path(base_gguf).name,
        "base_file": Path(base_gguf).name,
        "base_sha256": file_sha256(Path(base_gguf)) if hash_base else None,
        "base_size_bytes": Path(base_gguf).stat().st_size,  # with base_file: the cheap match "auto" makes
        "base_hf": peft_cfg.get("base_model_name_or_path"),
        "architecture": result.architecture,
        "rank": result.rank,
        "alpha": result.peft_alpha,
        "use_rslora": result.use_rslora,
        "target_modules": result.targets,
        "dataset": str(dataset) if dataset else None,
        "dataset_sha256": file_sha256(Path(dataset)) if dataset and Path(dataset).is_file() else None,
        "eval": metrics or {},
        "size_bytes": result.size_bytes,
    }
    mix_sha = _training_mix_sha256(Path(peft_dir))
    if mix_sha:
        manifest["mix_sha256"] = mix_sha  # the whole mix (train + held-out files) it was trained from
    manifest.update(extra or {})
    write_manifest(folder, manifest)
    return folder, result
