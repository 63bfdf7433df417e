"""MCP (Model Context Protocol) servers' tools in agx's catalogue.

- settings.py: which servers (agx.toml [mcp.servers.NAME] and the project's .mcp.json)
- manager.py: starts servers lazily on a loop thread of its own, calls tools (sync and async)
- catalogue.py: an MCP tool -> a `server.tool` ToolSpec (risk from annotations, grammar check)
- results.py: a tools/call result -> the task's output text
- agx itself as an MCP server (`agx mcp serve`) lives in agx/cli/mcp_serve.py (it runs plans: a layer above)

The SDK (`mcp`) is imported only when a server is configured, so agx without MCP servers pays
nothing for it.
"""
