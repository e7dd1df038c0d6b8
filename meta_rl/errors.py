"""What every layer may raise or hand up to the front door (``meta_rl.cli``): the run and
usage errors, and the hooks a process runs on its way out. The bottom layer: it imports
nothing of the package, so the trainer and the commands read these without importing the CLI.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["JobStopped", "UsageError", "at_exit", "run_exit_hooks"]


class UsageError(ValueError):
    """A verb's arguments do not go together (the message says what to pass instead)."""


class JobStopped(RuntimeError):
    """The job was stopped from outside this process: a signal (torchrun stops every process of
    a distributed job when one fails) or a lost peer. The message says what is kept and how to
    continue; the CLI prints it in one line and returns 1."""


_EXIT_HOOKS: list[Callable[[int], None]] = []


def at_exit(hook: Callable[[int], None]) -> None:
    """Register ``hook(exit_code)`` to run when the CLI has finished a verb (once per hook):
    a layer that must leave the process its own way (a torchrun worker, past the
    interpreter's teardown) says so here instead of the CLI importing it."""
    if hook not in _EXIT_HOOKS:
        _EXIT_HOOKS.append(hook)


def run_exit_hooks(code: int) -> None:
    """Run the registered exit hooks, in the order they were registered."""
    for hook in list(_EXIT_HOOKS):
        hook(code)
