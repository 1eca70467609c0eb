"""carl_studio.server: the MCP server over carl_studio.tools (stdio, SSE, streamable HTTP).

`build_server()` is in carl_studio.server.app; `carl-mcp` is carl_studio.server.main:main.
"""
