"""agx: a terminal agent shell that runs its own models.

Layers, lowest first (see ARCHITECTURE.md; tests/test_layers.py keeps it true): events ->
workspace -> config -> runtime -> planning -> mcp -> execution -> agent -> training -> ui / cli.
"""

__version__ = "0.1.0"
