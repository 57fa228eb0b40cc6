#!/usr/bin/env python3
"""Point the ROS ``*_msgs`` wheels' exported CMake files at this Python's include directories.

The ``ros-*-msgs`` wheels are built in a manylinux container, and their
``share/<pkg>/cmake/export_<pkg>__rosidl_generator_pyExport.cmake`` files hard-code that container's
include dirs (``/opt/python/cp311-cp311/include/python3.11`` and its numpy include). Any package that
generates Python bindings against them (ours, via ``rosidl_generate_interfaces``) then fails to
configure or compile. This rewrites those two kinds of path to the running interpreter's
``sysconfig`` include dir and ``numpy.get_include()``. Idempotent; run it with the venv's Python:

    .venv/bin/python tools/fix_ros_wheel_cmake.py .venv
"""
from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from pathlib import Path

# A path inside a quoted CMake list: no quote, semicolon or whitespace.
_PYTHON_INCLUDE = re.compile(r'[^";\s]*/include/python3\.\d+')
_NUMPY_INCLUDE = re.compile(r'[^";\s]*/numpy/(?:_core|core)/include')


def fix_file(path: Path, python_include: str, numpy_include: str) -> bool:
    """Rewrite one CMake file in place; return True when it changed."""
    text = path.read_text(encoding="utf-8")
    new = _PYTHON_INCLUDE.sub(lambda m: python_include, text)
    new = _NUMPY_INCLUDE.sub(lambda m: numpy_include, new)
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", type=Path, nargs="?", default=Path(sys.prefix),
                        help="install prefix holding share/<pkg>/cmake (default: this Python's prefix)")
    args = parser.parse_args(argv)

    import numpy  # the venv's numpy: its headers are what the generated C code compiles against

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    for header in (Path(python_include, "Python.h"), Path(numpy_include, "numpy", "arrayobject.h")):
        if not header.is_file():
            print(f"fix_ros_wheel_cmake: {header} is missing", file=sys.stderr)
            return 1

    files = sorted(args.prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake"))
    changed = [f for f in files if fix_file(f, python_include, numpy_include)]
    print(f"fix_ros_wheel_cmake: {len(changed)} of {len(files)} exported CMake files rewritten "
          f"(python {python_include}, numpy {numpy_include})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
