"""Doctor's probe of a remote role. Replaced by the full check of the remote-backend work."""

from __future__ import annotations


def check_remote_role(role, rc) -> tuple[bool, list[str]]:
    return False, [f"remote backend at {rc.base_url}: checks not implemented yet"]
