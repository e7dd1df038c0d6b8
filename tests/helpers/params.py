"""Network parameters: read from a checkpoint, compared."""

from __future__ import annotations

from pathlib import Path

import torch

from meta_rl.checkpoint import load_checkpoint


def checkpoint_params(path: Path) -> dict[str, torch.Tensor]:
    """The networks' state dict saved in the checkpoint at ``path``."""
    return load_checkpoint(path)["networks"]


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The same entries, equal to 1e-6 each."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
