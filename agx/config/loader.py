"""Layered configuration loading.

Layers, lowest first: built-in defaults (agx/config/defaults.toml) < the selected profile <
user file (~/.config/agx/agx.toml, or $AGX_CONFIG) < ./agx.toml in the repository <
AGX_* environment < CLI flags. Each value remembers which layer set it, so a validation error
names the file (or variable, or flag) the bad value came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from agx.config.errors import ConfigError
from agx.config.paths import DEFAULTS_FILE, user_config_path
from agx.config.schema import AgxConfig

ENV_PREFIX = "AGX_"
# AGX_* variables that are not config keys.
_ENV_RESERVED = {
    "AGX_CONFIG", "AGX_HOME",
    # the llama.cpp build: install-time accelerator choice and the build check (runtime/build_check.py)
    "AGX_LLAMA_ACCELERATOR", "AGX_SKIP_BUILD_CHECK", "AGX_BUILD_CHECK_FILE",
    # a run's token in its task processes (workspace/processes.py); the kill-at-step test hook
    "AGX_RUN_TOKEN", "AGX_TEST_KILL_AT",
}


@dataclass
class _Layer:
    source: str
    data: dict[str, Any]


@dataclass
class LoadedConfig:
    config: AgxConfig
    sources: list[str] = field(default_factory=list)
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)

    def origin_of(self, *path: str) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origin:
                return self.origin[path[:n]]
        return "built-in defaults"


def read_toml(path: Path, *, required: bool) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(str(path), "", "file not found") from None
        return None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read file ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "expected UTF-8 text (TOML)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid TOML: {exc}") from None


def _parse_scalar(text: str) -> Any:
    """Environment and --set values: TOML literal when they parse as one, else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(target: dict, path: list[str], value: Any, source: str) -> None:
    node = target
    for key in path[:-1]:
        nxt = node.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(source, ".".join(path), f"{key!r} is not a table")
        node = nxt
    node[path[-1]] = value


def env_layers(environ: Mapping[str, str]) -> list[_Layer]:
    """One layer per AGX_* variable, so an error names the variable that caused it."""
    layers = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in _ENV_RESERVED:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if path:
            data: dict[str, Any] = {}
            _set_path(data, path, _parse_scalar(environ[name]), f"environment {name}")
            layers.append(_Layer(f"environment {name}", data))
    return layers


def overrides_layer(assignments: list[str], source: str = "command line --set") -> _Layer | None:
    data: dict[str, Any] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(source, item, "expected KEY.PATH=VALUE, e.g. roles.echo.n_ctx=8192")
        _set_path(data, key.strip().split("."), _parse_scalar(value.strip()), source)
    return _Layer(source, data) if data else None


def _merge(into: dict, layer: dict, source: str, origin: dict, prefix: tuple[str, ...] = ()) -> None:
    for key, value in layer.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, source, origin, path)
        else:
            into[key] = _deepcopy(value)
            origin[path] = source
            if isinstance(value, dict):
                _mark(value, source, origin, path)


def _mark(value: dict, source: str, origin: dict, prefix: tuple[str, ...]) -> None:
    for key, sub in value.items():
        origin[prefix + (key,)] = source
        if isinstance(sub, dict):
            _mark(sub, source, origin, prefix + (key,))


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _first_error(exc: ValidationError, origin: dict) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    source = "built-in defaults"
    # The value itself, or (for a check on a whole table) the highest layer that set anything
    # inside it; else the nearest enclosing table.
    rank = {src: i for i, src in enumerate(dict.fromkeys(origin.values()))}
    inside = [src for path, src in origin.items() if path[: len(loc)] == loc]
    if inside:
        source = max(inside, key=rank.__getitem__)
    else:
        for n in range(len(loc), 0, -1):
            if loc[:n] in origin:
                source = origin[loc[:n]]
                break
    kind = err["type"]
    if kind == "extra_forbidden":
        expected = "unknown key (check the spelling; agx.toml documents every key)"
    elif kind == "missing":
        expected = "required key is missing"
    else:
        got = err.get("input")
        expected = err["msg"].removeprefix("Value error, ")
        if not isinstance(got, dict):
            expected += f" (got {got!r})"
    return ConfigError(source, ".".join(loc), expected)


def load_config(
    repo_dir: str | Path | None = None,
    *,
    profile: str | None = None,
    overrides: list[str] | None = None,
    extra_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    use_user_file: bool = True,
) -> LoadedConfig:
    """Build the effective configuration. Raises ConfigError (exit code 2) on any problem."""
    environ = os.environ if environ is None else environ
    layers: list[_Layer] = []
    defaults = read_toml(DEFAULTS_FILE, required=True) or {}
    if use_user_file:
        upath = user_config_path()
        udata = read_toml(upath, required="AGX_CONFIG" in environ)
        if udata is not None:
            layers.append(_Layer(str(upath), udata))
    if repo_dir is not None:
        rpath = Path(repo_dir) / "agx.toml"
        rdata = read_toml(rpath, required=False)
        if rdata is not None and rpath.resolve() != DEFAULTS_FILE.resolve():
            layers.append(_Layer(str(rpath), rdata))
    if extra_file is not None:
        layers.append(_Layer(str(extra_file), read_toml(Path(extra_file), required=True) or {}))
    layers.extend(env_layers(environ))
    cli = overrides_layer(overrides or [])
    if cli:
        layers.append(cli)
    if profile:
        layers.append(_Layer("command line --profile", {"profile": profile}))

    # First pass: which profile is selected, and which profiles exist (users may add their own).
    scratch: dict[str, Any] = {}
    _merge(scratch, defaults, "built-in defaults", {})
    for layer in layers:
        _merge(scratch, layer.data, layer.source, {})
    chosen = scratch.get("profile")

    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    _merge(merged, defaults, f"built-in defaults ({DEFAULTS_FILE})", origin)
    if chosen:
        profiles = scratch.get("profiles") or {}
        if not isinstance(profiles, dict) or chosen not in profiles:
            names = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
            src = next((l.source for l in reversed(layers) if "profile" in l.data), "config")
            raise ConfigError(src, "profile", f"unknown profile {chosen!r}; known profiles: {names}")
        prof = profiles[chosen]
        if isinstance(prof, dict) and isinstance(prof.get("roles"), dict):
            _merge(merged, {"roles": prof["roles"]}, f"profile {chosen!r}", origin)
    for layer in layers:
        _merge(merged, layer.data, layer.source, origin)
    try:
        config = AgxConfig.model_validate(merged)
    except ValidationError as exc:
        raise _first_error(exc, origin) from None
    return LoadedConfig(config=config, sources=[l.source for l in layers], origin=origin)
