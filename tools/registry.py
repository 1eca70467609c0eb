"""The one list of tools. The MCP server registers these and the CLI calls them.

To add a tool, define its `ToolSpec` next to its function (see carl_studio.tools.base)
and add one entry here. Tools are listed in the order an agent meets them.
"""

from __future__ import annotations

from carl_studio.tools.base import ToolSpec
from carl_studio.tools.bench import BENCH
from carl_studio.tools.compute import COMPUTE
from carl_studio.tools.eval import EVAL
from carl_studio.tools.jobs import LOGS, STATUS, STOP
from carl_studio.tools.observe import OBSERVE
from carl_studio.tools.push import PUSH
from carl_studio.tools.train import TRAIN

TOOLS: list[ToolSpec] = [
    COMPUTE,
    TRAIN,
    STATUS,
    LOGS,
    STOP,
    OBSERVE,
    EVAL,
    PUSH,
    BENCH,
]


def get_tool(name: str) -> ToolSpec:
    """The tool called `name` (KeyError naming the known tools when there is none)."""
    for spec in TOOLS:
        if spec.name == name:
            return spec
    raise KeyError(f"no tool {name!r}; known: {', '.join(spec.name for spec in TOOLS)}")
