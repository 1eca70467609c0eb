"""Benchmarks as library code: `reward` (coherence throughput, GRPO overhead) and `ab`
(seed-matched A/B of task-only vs task + CARL vs task + CARL guarded). Light at import."""
