"""What every subcommand needs: the repository, the loaded config, engines, the session log."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agx.workspace.state_dir import find_repo_root

if TYPE_CHECKING:
    from agx.config.loader import LoadedConfig

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_FAILURE = 1  # the job ran and failed (a task failed, generation error, ...)
EXIT_USAGE = 2  # bad config, bad arguments, bad input file
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error for the user: printed without a traceback, exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


@dataclass
class CliContext:
    args: object
    cwd: Path = field(default_factory=Path.cwd)
    _loaded: LoadedConfig | None = None
    _pool: object | None = None
    _repo_of: tuple[Path, Path | None] | None = None  # (cwd, its repository): asked git once

    @property
    def repo(self) -> Path | None:
        if self._repo_of is None or self._repo_of[0] != self.cwd:
            self._repo_of = (self.cwd, find_repo_root(self.cwd))
        return self._repo_of[1]

    @property
    def base_dir(self) -> Path:
        """The repository root, or the current directory outside a repository."""
        return self.repo or self.cwd

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from agx.config.loader import load_config  # pydantic: imported when first needed

            a = self.args
            self._loaded = load_config(
                self.base_dir,
                profile=getattr(a, "profile", None),
                overrides=getattr(a, "set", None) or [],
                extra_file=getattr(a, "config", None),
            )
        return self._loaded

    @property
    def config(self):
        return self.loaded.config

    @property
    def pool(self):
        if self._pool is None:
            from agx.runtime.pool import EnginePool

            self._pool = EnginePool(self.config, self.base_dir)
        return self._pool

    def warn_if_tiny(self, role: str, stream=sys.stderr) -> None:
        from agx.runtime.bundled import TINY_MODEL_NOTICE

        rc = self.config.role(role)
        if rc.backend == "llama_cpp" and rc.model.startswith("bundled:"):
            print(f"agx: {role}: {TINY_MODEL_NOTICE}", file=stream)
