#!/usr/bin/env bash
# Build a stand-in interface package (ros_interfaces/PKG: message definitions copied unchanged from the real
# package, so the same type names and type hashes) into the project venv, the same cmake/rosidl recipe as
# one2any_ros's own interfaces (docs/ros.md, Building the interfaces). Used for the packages the ROS 2
# wheels lack: tf2_msgs (the node's /tf) and vision_msgs (the node's ~/detections).
#
#   tools/build_standin_msgs.sh PKG [VENV] [BUILD_DIR]      (defaults: .venv, build/PKG)
#
# Skips when the venv's Python already imports a PKG that is not this stand-in (a full ROS install on its
# path). Otherwise configures once (~20-60 s) and rebuilds incrementally (~1 s).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="${1:?usage: tools/build_standin_msgs.sh PKG [VENV] [BUILD_DIR]}"
VENV="$(realpath -m "${2:-$ROOT/.venv}")"
BUILD="$(realpath -m "${3:-$ROOT/build/$PKG}")"
SRC="$ROOT/ros_interfaces/$PKG"
VPY="$VENV/bin/python"
[[ -f "$SRC/package.xml" ]] || { echo "$PKG: no stand-in in $SRC"; exit 1; }

# a message of the package (the first msg/*.msg) must import, not just an empty namespace package
first="$(cd "$SRC/msg" && ls -1 *.msg | head -n 1)"
where="$("$VPY" -c "import $PKG.msg as m; print(m.${first%.msg} and m.__file__)" 2>/dev/null || true)"
if [[ -n "$where" && "$where" != "$VENV"/* ]]; then
  echo "$PKG: using the installed one ($where)"
  exit 0
fi

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PYTHONUTF8=1
mkdir -p "$BUILD"
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$SRC" -B "$BUILD" --log-level=WARNING -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF > "$BUILD/configure.log" 2>&1 \
    || { cat "$BUILD/configure.log"; echo "$PKG: cmake configure failed (log: $BUILD/configure.log)"; exit 1; }
fi
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" > "$BUILD/build.log" 2>&1 \
  || { cat "$BUILD/build.log"; echo "$PKG: cmake --build failed (log: $BUILD/build.log)"; exit 1; }
cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 \
  || { cat "$BUILD/install.log"; echo "$PKG: cmake --install failed (log: $BUILD/install.log)"; exit 1; }
echo "$PKG (stand-in) built and installed into $VENV"
