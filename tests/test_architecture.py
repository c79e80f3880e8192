"""The package's imports run one way, following the data (docs/architecture.md): no module
imports one of a later stage, and there is no circle, also not through imports inside
functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "wsol"

#: the stages, in the order the data flow through them; a module may import modules of its own
#: or an earlier stage only
STAGES = [
    [
        "serialization",
        "yamlcheck",
        "data",
        "models",
        "methods",
        "mixing",
        "cam",
        "localize",
        "_threshold_sweep",
        "baselines",
    ],
    ["metrics"],
    ["runtime", "rundir", "config", "tracking"],
    ["train", "evaluate", "results"],
    ["report", "gallery", "sweep"],
    ["demo", "predict"],
    ["cli"],
]


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) or "__init__"


def _imports(path: Path) -> set[str]:
    """Every wsol module ``path`` imports, at any depth (functions included)."""
    tree = ast.parse(path.read_text())
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("wsol"):
                target = node.module.removeprefix("wsol").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            for name in names:  # `from . import backbones` names a module
                candidate = f"{target}.{name}" if target else name
                if (PACKAGE / candidate.replace(".", "/")).with_suffix(".py").is_file():
                    out.add(candidate)
                    break
            else:
                out.add(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wsol."):
                    out.add(alias.name.removeprefix("wsol."))
    return {m for m in out if m and m != _module(path)}


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _stage(module: str) -> int:
    top = module.split(".")[0]
    for k, names in enumerate(STAGES):
        if top in names:
            return k
    raise AssertionError(f"wsol.{module} is in no stage of tests/test_architecture.py")


def test_every_module_has_a_stage_and_imports_only_earlier_ones():
    for module, targets in _graph().items():
        if module == "__init__":
            continue
        for target in targets:
            assert _stage(target) <= _stage(module), f"wsol.{module} imports wsol.{target}"


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            nxt = nxt if nxt in graph else f"{nxt}.__init__" if f"{nxt}.__init__" in graph else nxt
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if state.get(nxt) is None and nxt in graph:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("def f():\n    from .train import train\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert _imports(module) == {"train"}
    finally:
        PACKAGE = saved


def test_reading_configs_and_results_does_not_import_torchvision():
    # importing torchvision costs about 1.5 s (it imports torch._dynamo, docs/performance.md):
    # `wsol compare` and the parent process of `wsol sweep` only read configs and results
    import subprocess
    import sys

    code = (
        "import sys, wsol.report, wsol.sweep, wsol.config\n"
        "from wsol.config import load_config\n"
        "load_config(None, ['model.name=inception_v3', 'method.method=acol'])\n"
        "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]
