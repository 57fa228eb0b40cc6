"""The layers show in the folders and hold: each folder of one2any_ros imports only the layers below it
(docs/architecture.md draws them). Read from the source with ``ast`` (every import, lazy ones included),
so a backwards import fails here before it tangles the package."""
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


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` - a ``python -m`` entry that hands over to the CLI, not a dependency."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in ``path`` outside a ``__main__`` block."""
    found: list[tuple[int, str, int]] = []

    def visit(node: ast.AST) -> None:
        if _is_main_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, 0) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


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
    """The check itself can fail: a core module importing training is caught, lazy or not."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from one2any_ros.training.train import train\n"
                   "if __name__ == '__main__':\n    from one2any_ros.apps.cli import main\n")
    modules = [m for _, m, _ in _imports(src)]
    assert modules == ["one2any_ros.training.train"]
