"""Model-based meta-reinforcement learning for robot arms: context encoder, task model, MAML."""

__version__ = "0.1.0"
