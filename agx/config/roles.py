"""The model roles agx knows (no pydantic here: the shell uses this before the config loads)."""

ROLE_NAMES = ("echo", "delta")
