"""Training: TrainSpec -> a TRL trainer with CARL rewards, capture, the cascade gate and run-dir events.

Heavy modules (trainers, capture, runner) import torch/trl; `spec` does not. Import them directly:

    from carl_engine.training.spec import TrainSpec
    from carl_engine.training.runner import train
"""
