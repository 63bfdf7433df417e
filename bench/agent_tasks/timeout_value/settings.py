"""Client settings."""

HOST = "localhost"
TIMEOUT = 10
RETRIES = 3
