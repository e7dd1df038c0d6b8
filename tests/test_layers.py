"""The package's layers (docs/design.md), enforced: every import, at module level or inside a
function, runs down the layers or stays in its own; ``envs/`` imports nothing of ``meta_rl``.
A module the map does not place fails too, so a new room is placed when it is built."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Bottom to top. A module may import its own layer and those below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "meta_rl",
            "meta_rl.config",
            "meta_rl.errors",
            "meta_rl.experiment",
            "meta_rl.runs",
            "meta_rl.checkpoint",
            "meta_rl.logging",
            "meta_rl.trial",
        ),
    ),
    ("task_envs", ("meta_rl.task_envs",)),
    ("agent", ("meta_rl.agent",)),
    ("training", ("meta_rl.training",)),
    ("baselines", ("meta_rl.baselines",)),
    ("evaluation", ("meta_rl.evaluation",)),
    ("front door", ("meta_rl.commands", "meta_rl.cli", "meta_rl.__main__")),
)


def layer_of(module: str) -> int | None:
    """The layer index of a ``meta_rl`` module (the longest matching prefix), else None."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself ("meta_rl") holds only its __init__, not every module under it.
            nested = prefix != "meta_rl" and module.startswith(prefix + ".")
            inside = module == prefix or nested
            if inside and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in a file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def layer_violations(root: Path) -> list[str]:
    """Every import of ``root/meta_rl`` that runs up a layer, every module of it no layer holds,
    and every import of ``meta_rl`` from ``root/envs``: one line each (one per import
    statement), naming file and line."""
    problems = []
    for path in sorted((root / "meta_rl").rglob("*.py")):
        module = _module_name(path, root)
        here = layer_of(module)
        if here is None:
            problems.append(f"{module}: in no layer (add it to LAYERS in tests/test_layers.py)")
            continue
        seen: set[int] = set()
        for line, target in _imports(path, module):
            there = layer_of(target) if target.split(".")[0] == "meta_rl" else None
            if there is not None and there > here and line not in seen:
                seen.add(line)
                problems.append(
                    f"{path.relative_to(root)}:{line}: {module} ({LAYERS[here][0]}) imports "
                    f"{target} ({LAYERS[there][0]}), a layer above"
                )
    for path in sorted((root / "envs").rglob("*.py")):
        for line, target in _imports(path, _module_name(path, root)):
            if target.split(".")[0] == "meta_rl":
                problems.append(f"{path.relative_to(root)}:{line}: envs imports {target}")
    return problems


def test_every_import_runs_down_the_layers() -> None:
    assert layer_violations(ROOT) == []


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    """The check fails on an upward import inside a function, one at module level, a relative
    one, an import of meta_rl from envs and a module in no layer."""
    for name in ("meta_rl", "envs"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    assert layer_violations(tmp_path) == []
    with (tmp_path / "meta_rl" / "agent" / "networks.py").open("a") as f:
        f.write("\n\ndef _planted():\n    from meta_rl.training.trainer import Trainer\n")
    with (tmp_path / "meta_rl" / "task_envs" / "family.py").open("a") as f:
        f.write("\nfrom ..agent import meta_agent\n")
    with (tmp_path / "envs" / "tasks.py").open("a") as f:
        f.write("\nimport meta_rl.config\n")
    (tmp_path / "meta_rl" / "roomless.py").write_text('"""Nowhere."""\n')
    found = "\n".join(layer_violations(tmp_path))
    assert "meta_rl.agent.networks (agent) imports meta_rl.training.trainer (training)" in found
    assert "meta_rl.task_envs.family (task_envs) imports meta_rl.agent (agent)" in found
    assert "envs/tasks.py" in found and "envs imports meta_rl.config" in found
    assert "meta_rl.roomless: in no layer" in found
    assert len(layer_violations(tmp_path)) == 4  # one line each
