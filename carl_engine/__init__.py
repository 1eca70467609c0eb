"""CARL Studio engine: coherence-aware rewards, TRL trainers, jobs and backends."""

__version__ = "0.1.0"
