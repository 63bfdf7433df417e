"""GGUF LoRA adapters: where they live, and a check against the base before loading.

llama.cpp refuses a mismatched adapter with a terse log line; agx explains instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from agx.config.paths import xdg_agx_dir
from agx.config.schema import ROLE_NAMES, AgxConfig
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
    return xdg_agx_dir("XDG_DATA_HOME", ".local/share") / "adapters"


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


# roles.<role>.adapter: "auto" (the default) = the adapter shipped for this role on this base
# model, if one is installed; "none" or "off" = the bare base.
ADAPTER_AUTO = "auto"
ADAPTER_OFF = ("none", "off")


def shipped_adapter_for(role: str, base_path: Path, config: AgxConfig) -> Path | None:
    """The adapter installed as `role`'s default on this base file: the first adapters/<name>/
    whose manifest lists the role in "default_for" and whose base_file and base_size_bytes are
    this file's (agenix-delta-smollm2 for Delta on the bundled model). A cheap match, done at
    every load; `agx doctor` and the tests check the full base_sha256."""
    folder = adapters_dir(config)
    try:
        size = Path(base_path).stat().st_size
        subs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    except OSError:
        return None
    for sub in subs:
        try:
            manifest = read_manifest(sub)
        except EngineError:
            continue  # a broken manifest never selects itself; `agx adapters list` reports it
        if (role in (manifest.get("default_for") or []) and manifest.get("base_file") == Path(base_path).name
                and manifest.get("base_size_bytes") == size and (sub / ADAPTER_FILE).is_file()):
            return sub / ADAPTER_FILE
    return None


def role_adapter(role: str, spec: str | None, base_path: Path | None, config: AgxConfig,
                 repo_dir: Path | None = None) -> Path | None:
    """The adapter file roles.<role>.adapter selects for this base (None: the bare base).
    Raises EngineError for a named adapter that is not there."""
    if not spec or spec.lower() in ADAPTER_OFF:
        return None
    if spec.lower() == ADAPTER_AUTO:
        return shipped_adapter_for(role, base_path, config) if base_path is not None else None
    return resolve_adapter(spec, config, repo_dir)


def _manifest_field(path: str | Path | None, key: str):
    """A field of an installed adapter's manifest (adapters/NAME/adapter.gguf); None for
    another file, an unreadable manifest or a field it does not have."""
    if not path or Path(path).name != ADAPTER_FILE:
        return None
    try:
        return read_manifest(Path(path).parent).get(key)
    except EngineError:
        return None


def _manifest_text(path: str | Path | None, key: str) -> str | None:
    """A text field of an installed adapter's manifest; None where `_manifest_field` is, or not text."""
    value = _manifest_field(path, key)
    return value if isinstance(value, str) else None


def adapter_purpose(path: str | Path | None) -> str | None:
    """What an installed adapter was trained for (its manifest's "purpose", e.g. "plan"); None
    means everything the role generates."""
    return _manifest_text(path, "purpose")


def adapter_prompt_style(path: str | Path | None) -> str | None:
    """The planning prompt style an installed adapter was trained with (its manifest's
    "prompt_style"), so the planner shows it the prompt it learned; None if it does not say."""
    return _manifest_text(path, "prompt_style")


def adapter_goal_style(path: str | Path | None) -> str | None:
    """How an installed planning adapter's targets wrote the plan's goal (its manifest's
    "goal_style": "steps" = numbered steps, one task each in training); None if it does not say."""
    return _manifest_text(path, "goal_style")


def adapter_scale_for(path: str | Path | None, configured: float | None) -> float:
    """The scale an adapter runs at: the role's `adapter_scale` when set; else the scale its
    manifest was measured at ("scale", e.g. 1.15 for agenix-delta-smollm2, whose plans score
    best above 1); else 1.0. A user's own adapter without that field keeps 1.0."""
    if configured is not None:
        return float(configured)
    value = _manifest_field(path, "scale")
    # bool is an int: a manifest's `true` is not a scale.
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 1.0


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
    pairs = 0
    for name, a_shape in adapter.tensor_shapes.items():
        if name.endswith(".lora_b"):
            if name[: -len(".lora_b")] + ".lora_a" not in adapter.tensor_shapes:
                problems.append(f"{name[: -len('.lora_b')]}: lora_b without lora_a")
            continue
        if not name.endswith(".lora_a"):
            problems.append(f"{name}: not a LoRA tensor (llama.cpp accepts only .lora_a/.lora_b)")
            continue
        pairs += 1
        # llama.cpp pairs "<base tensor name>.lora_a" with the base tensor of that exact name
        # (".weight" included, e.g. blk.0.attn_q.weight.lora_a).
        target = name[: -len(".lora_a")]
        base_shape = base.tensor_shapes.get(target)
        b_shape = adapter.tensor_shapes.get(target + ".lora_b")
        if base_shape is None:
            problems.append(f"{target}: no such tensor in the base")
            continue
        if b_shape is None:
            problems.append(f"{target}: lora_a without lora_b")
            continue
        # gguf shapes are (ne0, ne1): weight (in, out); lora_a (in, r); lora_b (r, out).
        if len(a_shape) != 2 or len(b_shape) != 2 or len(base_shape) != 2:
            problems.append(f"{target}: LoRA tensors must be matrices")
        elif a_shape[0] != base_shape[0] or b_shape[1] != base_shape[1] or a_shape[1] != b_shape[0]:
            problems.append(
                f"{target}: adapter maps {a_shape[0]}->{b_shape[1]} (rank {a_shape[1]}/{b_shape[0]}) "
                f"but the base weight maps {base_shape[0]}->{base_shape[1]}"
            )
    if not problems and pairs == 0:
        problems.append("the adapter holds no LoRA tensors")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        raise EngineError(f"{adapter_path}: does not fit base {base.path.name} — {shown}. Wrong base model?")


# -- installed adapters: adapters/<name>/adapter.gguf + manifest.json -----------------------

ADAPTER_FILE = "adapter.gguf"
MANIFEST_FILE = "manifest.json"


@dataclass
class InstalledAdapter:
    """One folder under adapters/, as `agx adapters list` shows it."""

    name: str
    path: Path
    size_bytes: int
    architecture: str | None = None
    base_model: str | None = None
    rank: int | None = None
    alpha: float | None = None
    targets: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    used_by: list[str] = field(default_factory=list)
    problem: str | None = None


def _first(d: dict, *keys):
    """Manifests are written by scripts too; accept the common spellings of each field."""
    for k in keys:
        if d.get(k) not in (None, "", [], {}):
            return d[k]
    return None


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"{path}: unreadable manifest ({exc})") from None
    return data if isinstance(data, dict) else {}


def write_manifest(folder: Path, data: dict) -> Path:
    """Write manifest.json atomically (a crash never leaves half a manifest)."""
    path = Path(folder) / MANIFEST_FILE
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def describe_adapter(name: str, gguf_path: Path) -> InstalledAdapter:
    """Manifest fields first, the GGUF's own metadata (agx.lora.*) where the manifest is silent."""
    entry = InstalledAdapter(name=name, path=gguf_path, size_bytes=gguf_path.stat().st_size)
    try:
        manifest = read_manifest(gguf_path.parent) if gguf_path.name == ADAPTER_FILE else {}
    except EngineError as exc:
        manifest, entry.problem = {}, str(exc)
    entry.manifest = manifest
    meta: dict = {}
    try:
        info = read_gguf_info(gguf_path)
        meta = info.metadata
        entry.architecture = info.architecture
        if info.general_type != "adapter":
            entry.problem = f"not a LoRA adapter (general.type={info.general_type!r})"
    except GGUFError as exc:
        entry.problem = str(exc)
    base = _first(manifest, "base_model", "base_model_name", "base")
    if isinstance(base, dict):  # {"name": ..., "file": ..., "sha256": ...}
        base = _first(base, "name", "file", "path")
    entry.base_model = base or meta.get("agx.lora.base_model") or meta.get("agx.lora.base_gguf")
    rank = _first(manifest, "rank", "r", "lora_r")
    entry.rank = int(rank) if rank is not None else meta.get("agx.lora.rank")
    alpha = _first(manifest, "alpha", "lora_alpha")
    entry.alpha = float(alpha) if alpha is not None else meta.get("agx.lora.peft_alpha")
    targets = _first(manifest, "target_modules", "targets")
    # gguf_info abbreviates arrays, so the GGUF's own target list is read separately.
    entry.targets = list(targets) if targets else _gguf_targets(gguf_path)
    metrics = _first(manifest, "eval", "eval_metrics", "metrics")
    entry.metrics = metrics if isinstance(metrics, dict) else {}
    return entry


def _gguf_targets(path: Path) -> list[str]:
    try:
        from gguf import GGUFReader

        fld = GGUFReader(path, "r").get_field("agx.lora.target_modules")
        return list(fld.contents()) if fld is not None else []
    except Exception:  # an adapter not made by agx simply has no such key
        return []


def roles_using(config: AgxConfig, gguf_path: Path, repo_dir: Path | None = None) -> list[str]:
    """The roles whose configured adapter resolves to this file."""
    users = []
    for role in ROLE_NAMES:
        resolved = _configured_adapter(config, role, repo_dir)
        if resolved is not None and resolved.resolve() == Path(gguf_path).resolve():
            users.append(role)
    return users


def _configured_adapter(config: AgxConfig, role: str, repo_dir: Path | None) -> Path | None:
    """What the role's adapter setting selects for its configured model, None when nothing
    (a remote role, an unresolvable model or a missing adapter included)."""
    rc = config.role(role)
    if rc.backend == "openai":
        return None
    base = None
    if rc.adapter and rc.adapter.lower() == ADAPTER_AUTO:
        from agx.runtime.models import ModelSpecError, resolve_model

        try:
            base = resolve_model(rc.model, config, repo_dir).path
        except ModelSpecError:
            return None
        if base is None or not base.is_file():
            return None
    try:
        return role_adapter(role, rc.adapter, base, config, repo_dir)
    except EngineError:
        return None


def list_adapters(config: AgxConfig, repo_dir: Path | None = None) -> list[InstalledAdapter]:
    """Every adapters/<name>/adapter.gguf, plus adapters the roles name by path."""
    folder = adapters_dir(config)
    found: list[InstalledAdapter] = []
    seen: set[Path] = set()
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            gguf_path = sub / ADAPTER_FILE
            if gguf_path.is_file():
                found.append(describe_adapter(sub.name, gguf_path))
                seen.add(gguf_path.resolve())
    for role in ROLE_NAMES:  # a role may point at a file outside adapters/
        path = _configured_adapter(config, role, repo_dir)
        if path is not None and path.resolve() not in seen:
            seen.add(path.resolve())
            found.append(describe_adapter(path.name, path))
    for entry in found:
        entry.used_by = roles_using(config, entry.path, repo_dir)
    return found


def file_sha256(path: Path, chunk: int = 4 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def switch_role_adapter(pool, role: str, name_or_path: str | None, scale: float | None = None) -> Path | None:
    """Switch a running role's adapter without reloading its base model (for the shell).

    `name_or_path` None (or "none") returns the role to the bare base; "auto" to the adapter
    shipped for its base, if any. The role's config is
    not changed: the switch lasts for this session. Returns the adapter file now in use.
    """
    engine = pool.engine(role)
    if not hasattr(engine, "set_adapter"):
        raise EngineError(f"roles.{role} runs on a remote server; its adapter is chosen there, not by agx")
    model = getattr(engine, "model", None)
    base = Path(model.settings.path) if model is not None else None
    path = role_adapter(role, name_or_path, base, pool.config, pool.repo_dir)
    if scale is None:
        scale = adapter_scale_for(path, pool.config.role(role).adapter_scale)
    engine.set_adapter(path, scale)
    return path
