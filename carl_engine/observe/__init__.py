"""Observe a run: read its metrics, find its phases and transition, check stop rules, plot.

Importing this package loads neither numpy nor matplotlib (they load when a run is analysed),
so the MCP server can import it at start-up.
"""

from carl_engine.observe.analyze import observe, pick_signals, summarize
from carl_engine.observe.diagnose import DEFAULT_MODEL, Diagnosis, diagnose
from carl_engine.observe.models import MetricSummary, Observation, Phase, Signals, StopRuleVerdict
from carl_engine.observe.phases import find_phases
from carl_engine.observe.readers import MetricLog, resolve

__all__ = [
    "DEFAULT_MODEL",
    "Diagnosis",
    "MetricLog",
    "MetricSummary",
    "Observation",
    "Phase",
    "Signals",
    "StopRuleVerdict",
    "diagnose",
    "find_phases",
    "observe",
    "pick_signals",
    "resolve",
    "summarize",
]
