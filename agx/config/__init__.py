"""Configuration: pydantic schema, layered loading, profiles.

Public surface: `load_config(...) -> AgxConfig`, `ConfigError`, `RoleConfig`.
Attributes load on first use (PEP 562), so importing `agx.config.errors` or
`agx.config.roles` does not import pydantic.
"""

from agx.config.errors import ConfigError

__all__ = ["AgxConfig", "RoleConfig", "SamplingConfig", "ConfigError", "load_config"]


def __getattr__(name: str):
    if name in ("AgxConfig", "RoleConfig", "SamplingConfig"):
        from agx.config import schema

        return getattr(schema, name)
    if name == "load_config":
        from agx.config.loader import load_config

        return load_config
    raise AttributeError(f"module 'agx.config' has no attribute {name!r}")
