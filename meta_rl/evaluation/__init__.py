"""Evaluation of adaptive agents: the K-episode trial protocol, statistics, plots, videos, W&B.

Entry points: :func:`meta_rl.evaluation.runner.evaluate_checkpoint` (a meta-RL checkpoint and
its baselines) and :func:`meta_rl.evaluation.runner.evaluate_methods` (any agents). See
docs/evaluation.md for the protocol and the keys of ``eval.json``.
"""

from meta_rl.evaluation.protocol import TrialResults, run_trials, sample_tasks
from meta_rl.evaluation.stats import Summary, bootstrap_ci, iqm, summarize
from meta_rl.trial import AdaptiveAgent

__all__ = [
    "AdaptiveAgent",
    "Summary",
    "TrialResults",
    "bootstrap_ci",
    "iqm",
    "run_trials",
    "sample_tasks",
    "summarize",
]
