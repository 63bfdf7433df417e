"""A small MCP server for agx's tests, written with the SDK's MCPServer (FastMCP in SDK 1.x).

Failure cases agx must survive: a crash mid-call, a hang past the timeout (it records whether the
request was cancelled on its side), an error result, a 10 MB result, an input schema llama.cpp's
grammar cannot express. Plus `sleep`, for concurrency and the parallel-efficiency benchmark.

    python flaky_server.py                 # stdio
    python flaky_server.py --http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False)
server = MCPServer("flaky")


@server.tool(annotations=READ)
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool(annotations=READ)
async def sleep(seconds: float, tag: str = "") -> str:
    """Sleep for some seconds, then report the start and end times (for overlap measurements)."""
    start = time.time()
    await asyncio.sleep(seconds)
    return f"{tag} {start:.6f} {time.time():.6f}".strip()


@server.tool(annotations=READ)
async def hang(marker: str) -> str:
    """Never answer; if the request is cancelled, write 'cancelled' to the marker file."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise
    return "woke up"


@server.tool(annotations=READ)
def crash() -> str:
    """Die in the middle of the call."""
    print("flaky: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(7)


@server.tool(annotations=READ)
def fail(reason: str = "it went wrong") -> str:
    """Report a tool error (isError)."""
    raise ToolError(f"flaky failure: {reason}")


@server.tool(annotations=READ)
def big(megabytes: int = 10) -> str:
    """Return a large text."""
    return "x" * (megabytes * 1024 * 1024)


@server.tool()
def touch_nothing(note: str) -> str:
    """No annotations (treated as a command), writes nothing."""
    return f"noted: {note}"


@server.tool(annotations=READ)
def odd_schema(code: str) -> str:
    """A tool whose input schema has a pattern llama.cpp's grammar cannot express."""
    return code


def _set_unexpressible_schema() -> None:
    # An unanchored pattern with a lookahead: JSON Schema allows it, llama.cpp's converter does not.
    tool = server._tool_manager.get_tool("odd_schema")
    tool.parameters = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=x)\\d+"}},
                       "required": ["code"]}


if __name__ == "__main__":
    _set_unexpressible_schema()
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
