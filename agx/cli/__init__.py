"""Command-line interface: `agx` and its subcommands (one module per command group)."""
