"""agx: a terminal agent shell that runs its own models.

Layers (see ARCHITECTURE.md): config -> runtime (engines) -> planning -> execution ->
workspace (git, session log) -> ui / cli.
"""

__version__ = "0.1.0"
