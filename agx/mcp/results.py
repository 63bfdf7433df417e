"""A tools/call result as a task's output text.

Text blocks are the output; other content is summarised with its MIME type (the bytes are no
use inside a plan's text placeholders); a result with only structured content gives its JSON.
"""

from __future__ import annotations

import json
from typing import Any


def _b64_size(data: str) -> int:
    return len(data) * 3 // 4 - data[-2:].count("=")


def block_text(block: Any) -> str:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_b64_size(block.data)} bytes]"
    if kind == "resource":
        res = block.resource
        if getattr(res, "text", None) is not None:
            return res.text
        return f"[resource {res.uri}: {res.mime_type or 'application/octet-stream'}, {_b64_size(res.blob)} bytes]"
    if kind == "resource_link":
        return f"[resource link {block.uri}" + (f": {block.mime_type}" if block.mime_type else "") + "]"
    return f"[{kind or type(block).__name__} content]"


def result_text(result: Any) -> str:
    parts = [block_text(b) for b in (result.content or [])]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)
