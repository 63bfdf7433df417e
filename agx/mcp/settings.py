"""Which MCP servers agx talks to: agx.toml's [mcp.servers.NAME] and the project's .mcp.json.

.mcp.json is the file other agent shells read ({"mcpServers": {NAME: {...}}}): stdio entries
have command/args/env/cwd, HTTP entries type "http" (or "streamable-http") with url and
headers; `${VAR}` and `${VAR:-default}` expand from the environment in every string, as those
shells do. A server named in both files takes agx.toml's entry.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agx.config.errors import ConfigError

MCP_JSON = ".mcp.json"
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    source: str  # the file (or "agx.toml") the entry came from, for messages
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    timeout_s: float = 60.0
    max_restarts: int = 3  # restarts after a death, per process ([mcp] max_restarts)
    restart_backoff_s: float = 1.0  # before the first restart; doubled for each next one

    @property
    def display(self) -> str:
        """How the server is started, for one-line reports."""
        if self.url:
            return self.url
        return " ".join([self.command or "", *self.args]).strip()


def _expand(value: Any, environ: dict[str, str], where: str, source: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ConfigError(source, where, f"environment variable {name} is not set (used as ${{{name}}})")
        return _VAR_RE.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, environ, where, source) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, environ, f"{where}.{k}", source) for k, v in value.items()}
    return value


def _string_map(value: Any, source: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(source, where, "expected an object of strings")
    return dict(value)


def read_mcp_json(path: Path, environ: dict[str, str] | None = None) -> list[ServerSpec]:
    """Servers declared in a .mcp.json file; ConfigError (exit 2) naming the key on bad input."""
    environ = dict(os.environ) if environ is None else environ
    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(source, "", f"invalid JSON ({exc})") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(source, "mcpServers", "expected an object mapping server names to their settings")
    specs = []
    for name, entry in servers.items():
        where = f"mcpServers.{name}"
        if not SERVER_NAME_RE.match(name):
            raise ConfigError(source, where, "server names use letters, digits, _ and - (no dots), at most 32")
        if not isinstance(entry, dict):
            raise ConfigError(source, where, "expected an object")
        entry = _expand(entry, environ, where, source)
        kind = entry.get("type", "stdio" if "command" in entry else "http")
        if kind == "stdio":
            command, args = entry.get("command"), entry.get("args", [])
            if not isinstance(command, str) or not command:
                raise ConfigError(source, f"{where}.command", "expected the command that starts the server")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise ConfigError(source, f"{where}.args", "expected a list of strings")
            cwd = entry.get("cwd")
            if cwd is not None and not isinstance(cwd, str):
                raise ConfigError(source, f"{where}.cwd", "expected a path")
            specs.append(ServerSpec(name, source, command=command, args=tuple(args),
                                    env=_string_map(entry.get("env"), source, f"{where}.env"), cwd=cwd,
                                    enabled=entry.get("disabled") is not True))
        elif kind in ("http", "streamable-http", "streamable_http"):
            url = entry.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigError(source, f"{where}.url", "expected an http:// or https:// URL")
            specs.append(ServerSpec(name, source, url=url,
                                    headers=_string_map(entry.get("headers"), source, f"{where}.headers"),
                                    enabled=entry.get("disabled") is not True))
        else:
            raise ConfigError(source, f"{where}.type", f"unsupported transport {kind!r}; agx speaks stdio and http (streamable HTTP)")
    return specs


def server_specs(config, base_dir: Path, environ: dict[str, str] | None = None) -> list[ServerSpec]:
    """Every configured server (enabled or not), agx.toml's entries over .mcp.json's."""
    environ = dict(os.environ) if environ is None else environ
    mcp = config.mcp
    by_name: dict[str, ServerSpec] = {}
    if mcp.read_mcp_json:
        for spec in read_mcp_json(Path(base_dir) / MCP_JSON, environ):
            by_name[spec.name] = spec
    for name, sc in mcp.servers.items():
        headers = {}
        for header, var in sc.headers_env.items():
            if var not in environ:
                if not sc.enabled:
                    continue
                raise ConfigError("agx.toml", f"mcp.servers.{name}.headers_env.{header}",
                                  f"environment variable {var} is not set")
            headers[header] = environ[var]
        cwd = sc.cwd
        if cwd is not None:
            cwd = str((Path(base_dir) / os.path.expanduser(cwd)).resolve())
        by_name[name] = ServerSpec(name, "agx.toml", command=sc.command, args=tuple(sc.args), env=dict(sc.env),
                                   cwd=cwd, url=sc.url, headers=headers, enabled=sc.enabled, timeout_s=sc.timeout_s)
    return [replace(s, max_restarts=mcp.max_restarts, restart_backoff_s=mcp.restart_backoff_s)
            for s in by_name.values()]
