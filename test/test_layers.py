"""The layers show in the folders and hold: each folder of one2any_ros imports only the layers below it
(docs/architecture.md draws them), and no module imports itself through others. Read from the source with ``ast``
(every import that can run: lazy ones and ``__main__`` blocks included), so a backwards import or an import circle
fails here before it tangles the package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "one2any_ros"

# layer -> the layers of one2any_ros it may import (itself always). ``msg``/``srv`` are the generated interfaces.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "evaluation": {"core", "data"},
    "training": {"core", "data", "evaluation"},
    "ros": {"core", "msg", "srv"},
    "ros_tools": {"core", "data", "ros", "msg", "srv"},
    "apps": {"core", "data", "evaluation", "training", "ros", "ros_tools"},
}
ROS_MODULES = ("rclpy", "rosidl_runtime_py", "tf2_ros", "message_filters", "sensor_msgs", "geometry_msgs",
               "std_msgs", "vision_msgs", "diagnostic_msgs", "tf2_msgs", "builtin_interfaces", "rosbags")


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) - imports for annotations only, never run."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``path`` that can run: lazy ones inside functions and ``if __name__ == "__main__"``
    blocks included, ``if TYPE_CHECKING`` bodies left out."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = node.orelse if _is_type_checking(node) else ast.iter_child_nodes(node)
        for child in children:
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in ``path`` (see ``_import_nodes``)."""
    found: list[tuple[int, str, int]] = []
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, 0) for a in node.names)
        else:
            found.append((node.lineno, node.module or "", node.level))
    return found


def _module_name(path: Path, root: Path) -> str:
    """``root/core/x.py`` -> ``one2any_ros.core.x``; a package's ``__init__.py`` is the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the package under ``root`` it imports. ``from pkg import name`` is an edge to
    ``pkg.name`` when that is a submodule, else to ``pkg`` (its ``__init__``); relative imports are resolved."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _import_nodes(path):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            graph[mod].update(t for t in targets if t in files and t != mod)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(circles)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


def test_every_module_lives_in_a_layer_folder():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert top == [], f"modules outside a layer folder: {top}"
    layers = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert set(layers) <= set(ALLOWED), f"a layer folder the rules do not know: {set(layers) - set(ALLOWED)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path):
    rel = path.relative_to(PACKAGE)
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    bad = []
    for line, module, level in _imports(path):
        if level:
            bad.append(f"line {line}: relative import (the package imports absolutely, so a layer shows)")
            continue
        parts = module.split(".")
        if parts[0] == "one2any_ros" and len(parts) > 1 and layer is not None:
            target = parts[1]
            if target != layer and target not in ALLOWED[layer]:
                bad.append(f"line {line}: {layer}/ imports {module} ({target}/ is not below it)")
        if parts[0] in ROS_MODULES and layer not in ("ros", "ros_tools", "apps"):
            bad.append(f"line {line}: {module} is ROS; only ros/ and ros_tools/ import it")
    assert not bad, f"{rel}:\n" + "\n".join(bad)


def test_the_rules_catch_a_backwards_import(tmp_path: Path):
    """The check itself can fail: a core module importing training is caught, lazy or in a ``__main__`` block; an
    import for type annotations only is not one."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from one2any_ros.ros.node import Node\n"
                   "def f():\n    from one2any_ros.training.train import train\n"
                   "if __name__ == '__main__':\n    from one2any_ros.apps.cli import main\n")
    modules = [m for _, m, _ in _imports(src)]
    assert modules == ["typing", "one2any_ros.training.train", "one2any_ros.apps.cli"]


def test_no_import_circles():
    """No module imports itself through others (lazy imports and ``__main__`` blocks count: they run too)."""
    circles = import_circles(import_graph(PACKAGE))
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_catches_a_planted_circle(tmp_path: Path):
    """A lazy import closing a circle, and a package ``__init__`` importing a submodule that imports the package
    back, are both found; ``from pkg import submodule`` is no circle with ``pkg/__init__``."""
    root = tmp_path / "one2any_ros"
    for d in ("core", "evaluation"):
        (root / d).mkdir(parents=True)
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/a.py": "from one2any_ros.core.b import g\n",
        "core/b.py": "def g():\n    from one2any_ros.core import a\n",
        "core/c.py": "from one2any_ros.core import b\n",
        "evaluation/__init__.py": "from one2any_ros.evaluation.run import run\n",
        "evaluation/run.py": "if __name__ == '__main__':\n    from one2any_ros.evaluation import plan\n"
                             "from one2any_ros.evaluation import summarize\n",
        "evaluation/plan.py": "from . import summary\n",
        "evaluation/summary.py": "summarize = None\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["one2any_ros.evaluation.plan"] == {"one2any_ros.evaluation.summary"}
    assert graph["one2any_ros.core.c"] == {"one2any_ros.core.b"}
    assert import_circles(graph) == [["one2any_ros.core.a", "one2any_ros.core.b"],
                                     ["one2any_ros.evaluation", "one2any_ros.evaluation.run"]]
