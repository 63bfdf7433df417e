"""GGUF LoRA adapters: where they live, and a check against the base before loading.

llama.cpp refuses a mismatched adapter with a terse log line; agx explains instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from agx.config.schema import AgxConfig
from agx.runtime.engine import EngineError
from agx.runtime.gguf_info import GGUFError, GGUFInfo, read_gguf_info

_SOURCE_ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "adapters"


def adapters_dir(config: AgxConfig) -> Path:
    if os.environ.get("AGX_ADAPTERS_DIR"):
        return Path(os.environ["AGX_ADAPTERS_DIR"]).expanduser()
    if config.adapters_dir:
        return Path(config.adapters_dir).expanduser()
    if _SOURCE_ADAPTERS_DIR.is_dir():
        return _SOURCE_ADAPTERS_DIR
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "agx" / "adapters"


def resolve_adapter(name_or_path: str, config: AgxConfig, repo_dir: Path | None = None) -> Path:
    """A name under adapters/ (adapters/NAME/adapter.gguf) or a path to an adapter .gguf."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".gguf" or candidate.is_absolute() or os.sep in name_or_path:
        if not candidate.is_absolute() and repo_dir is not None:
            candidate = Path(repo_dir) / candidate
        if not candidate.is_file():
            raise EngineError(f"adapter file not found: {candidate}")
        return candidate
    folder = adapters_dir(config) / name_or_path
    path = folder / "adapter.gguf"
    if not path.is_file():
        raise EngineError(f"adapter {name_or_path!r} not found (looked for {path}); `agx adapters list` shows what is installed")
    return path


def check_adapter_against_base(adapter_path: Path, base: GGUFInfo) -> None:
    """Raise EngineError explaining why this adapter cannot be applied to this base."""
    try:
        adapter = read_gguf_info(adapter_path)
    except GGUFError as exc:
        raise EngineError(f"adapter unreadable: {exc}") from None
    if adapter.general_type != "adapter" or adapter.metadata.get("adapter.type") != "lora":
        raise EngineError(f"{adapter_path}: not a LoRA adapter GGUF (general.type={adapter.general_type!r})")
    if adapter.architecture != base.architecture:
        raise EngineError(
            f"{adapter_path}: adapter was made for architecture {adapter.architecture!r} but the base "
            f"model {base.path.name} is {base.architecture!r}"
        )
    problems = []
    for name, a_shape in adapter.tensor_shapes.items():
        if not name.endswith(".lora_a"):
            continue
        target = name[: -len(".lora_a")]
        base_shape = base.tensor_shapes.get(target + ".weight")
        b_shape = adapter.tensor_shapes.get(target + ".lora_b")
        if base_shape is None:
            problems.append(f"{target}: no such tensor in the base")
            continue
        if b_shape is None:
            problems.append(f"{target}: lora_a without lora_b")
            continue
        # gguf shapes are (ne0, ne1): weight (in, out); lora_a (in, r); lora_b (r, out).
        if a_shape[0] != base_shape[0] or b_shape[1] != base_shape[1] or a_shape[1] != b_shape[0]:
            problems.append(f"{target}: adapter A{a_shape} B{b_shape} does not fit base weight {base_shape}")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        raise EngineError(f"{adapter_path}: does not fit base {base.path.name} — {shown}. Wrong base model?")
