"""Workspace: the user's repository — agx's state folder (.agx/), session logs, git isolation."""
