"""Text typed by the user (arguments, piped stdin) as valid Unicode, whatever its bytes.

Python hands over argv bytes that are not UTF-8 as lone surrogates (`$'hello \\xff'` becomes
'hello \\udcff'), and those crash whatever encodes them later (the session log, the model's
tokenizer). agx decodes them here, once, with U+FFFD for what is not UTF-8 — as `git log`
and most terminals show such bytes. File paths are *not* passed through this: a path must
keep its exact bytes.
"""

from __future__ import annotations

import sys


def clean_text(text: str) -> str:
    """`text` with surrogates from undecodable bytes replaced by U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates outside the escape range (U+D800..U+DC7F, ...)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def read_stdin_text() -> str:
    """All of stdin as text; bytes that are not UTF-8 become U+FFFD (no UnicodeDecodeError)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # replaced by a text stream (tests): it is text already
        return clean_text(sys.stdin.read())
    return stream.read().decode("utf-8", "replace")
