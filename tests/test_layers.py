"""ARCHITECTURE.md's promise, checked: a module never imports from a layer above its own.

Every module under agx/ is parsed (ast, so lazy imports inside functions count too) and each
`agx.*` import is compared by layer rank. Same-rank imports are allowed (a layer's modules use
each other); upward ones fail with the importing line named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGX = Path(__file__).resolve().parents[1] / "agx"

# Higher rank = higher layer. A module may import its own rank or lower.
LAYERS: dict[str, int] = {
    "ui": 9, "cli": 9, "__main__": 9,       # front ends: asking and showing
    "training": 8,                          # beside the front ends: datasets, eval, LoRA; only cli imports it
    "agent": 7, "conversation": 7,          # one request's life: route, plan, run, observe, replan, report
    "execution": 6,                         # executor, runners, plan_run, policy, builtin tools
    "mcp": 5,                               # MCP client: tools for planning (above it), run by execution (below it)
    "planning": 4,
    "runtime": 3,
    "config": 2,
    "workspace": 1,
    "events": 0, "__init__": 0,             # plain data, imports nothing of agx
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path = AGX) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "agx"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "agx":  # `from agx import events` (a module) or `__version__` (the package's)
                found += [(node.lineno, "agx.__init__" if a.name.startswith("__") else f"agx.{a.name}")
                          for a in node.names]
            elif node.module.startswith("agx."):
                found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path = AGX) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        own = layer_of(mod)
        if own not in LAYERS:
            problems.append(f"{path.relative_to(root.parent)}: layer {own!r} is not in tests/test_layers.py's LAYERS")
            continue
        for line, target in imports_of(path):
            dest = layer_of(target)
            if dest not in LAYERS:
                problems.append(f"{path.relative_to(root.parent)}:{line}: imports {target} of unknown layer {dest!r}")
            elif LAYERS[dest] > LAYERS[own]:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {own} imports {target} ({dest} is above it)")
    return problems


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_check_catches_an_upward_import(tmp_path):
    # The same check on a tiny tree that breaks the rule: it must fail there.
    pkg = tmp_path / "agx"
    (pkg / "workspace").mkdir(parents=True)
    (pkg / "planning").mkdir()
    (pkg / "workspace" / "store.py").write_text("def f():\n    from agx.execution.executor import Executor\n")
    (pkg / "planning" / "ok.py").write_text("from agx.runtime.engine import Engine\nfrom agx import events\n")
    assert upward_imports(pkg) == [
        "agx/workspace/store.py:2: workspace imports agx.execution.executor (execution is above it)"]


@pytest.mark.parametrize("layer", ["events", "workspace", "config", "runtime", "planning", "execution"])
def test_every_layer_named_in_architecture_md_exists(layer):
    assert (AGX / layer).is_dir() or (AGX / f"{layer}.py").is_file()


# git by subprocess outside the workspace layer: none, except these (with the reason).
GIT_SUBPROCESS_ALLOWED: set[str] = set()


def git_subprocess_calls(root: Path = AGX) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if rel.startswith("agx/workspace/") or rel in GIT_SUBPROCESS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) \
                    and node.elts[0].value == "git":
                found.append(f"{rel}:{node.lineno}: runs git directly (use agx/workspace/gitread.py)")
    return found


def test_git_runs_behind_the_workspace_layer():
    assert git_subprocess_calls() == []


def test_the_git_check_catches_a_direct_call(tmp_path):
    (tmp_path / "agx" / "ui").mkdir(parents=True)
    (tmp_path / "agx" / "ui" / "pane.py").write_text('import subprocess\nsubprocess.run(["git", "status"])\n')
    assert git_subprocess_calls(tmp_path / "agx") == ["agx/ui/pane.py:2: runs git directly (use agx/workspace/gitread.py)"]
