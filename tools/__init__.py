"""carl_studio.tools: the tool contracts (request/response models + one function each).

No MCP in here: the server (carl_studio.server) and the CLI (carl_studio.cli) are two
front ends over the same `TOOLS` list (carl_studio.tools.registry).
"""
