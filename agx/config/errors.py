"""The configuration error type, apart from the schema so that catching it costs no pydantic import
(the shell's first frame is drawn before the config is validated)."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, phrased for the user: source, key path, expectation."""

    exit_code = 2

    def __init__(self, source: str, key_path: str, expected: str):
        self.source, self.key_path, self.expected = source, key_path, expected
        where = f"{source}: {key_path}" if key_path else source
        super().__init__(f"config error in {where}: {expected}")
