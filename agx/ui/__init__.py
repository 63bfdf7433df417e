"""The full-screen shell (`agx` with no command): a Textual app over the same engine, planner,
executor and git workspace the headless commands use."""
