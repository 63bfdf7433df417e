"""Configuration: pydantic schema, layered loading, profiles.

Public surface: `load_config(...) -> AgxConfig`, `ConfigError`, `RoleConfig`.
"""

from agx.config.schema import AgxConfig, RoleConfig, SamplingConfig
from agx.config.loader import ConfigError, load_config

__all__ = ["AgxConfig", "RoleConfig", "SamplingConfig", "ConfigError", "load_config"]
