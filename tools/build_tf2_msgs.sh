#!/usr/bin/env bash
# Build the tf2_msgs stand-in (ros_interfaces/tf2_msgs: msg/TFMessage only) into the project venv, the
# same cmake/rosidl recipe as one2any_ros's own interfaces (docs/ros.md, Building the interfaces). The
# node publishes /tf with it when the real tf2_msgs (a full ROS 2 install) is not importable.
#
#   tools/build_tf2_msgs.sh [VENV] [BUILD_DIR]      (defaults: .venv, build/tf2_msgs)
#
# Skips when the venv's Python already imports a tf2_msgs that is not this stand-in (a full ROS
# install on its path). Otherwise configures once (~20 s) and rebuilds incrementally (~1 s).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(realpath -m "${1:-$ROOT/.venv}")"
BUILD="$(realpath -m "${2:-$ROOT/build/tf2_msgs}")"
SRC="$ROOT/ros_interfaces/tf2_msgs"
VPY="$VENV/bin/python"

where="$("$VPY" -c 'import tf2_msgs.msg as m; print(m.TFMessage and m.__file__)' 2>/dev/null || true)"
if [[ -n "$where" && "$where" != "$VENV"/* ]]; then
  echo "tf2_msgs: using the installed one ($where)"
  exit 0
fi

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PYTHONUTF8=1
mkdir -p "$BUILD"
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$SRC" -B "$BUILD" --log-level=WARNING -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF > "$BUILD/configure.log" 2>&1 \
    || { cat "$BUILD/configure.log"; echo "tf2_msgs: cmake configure failed (log: $BUILD/configure.log)"; exit 1; }
fi
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" > "$BUILD/build.log" 2>&1 \
  || { cat "$BUILD/build.log"; echo "tf2_msgs: cmake --build failed (log: $BUILD/build.log)"; exit 1; }
cmake --install "$BUILD" > "$BUILD/install.log" 2>&1 \
  || { cat "$BUILD/install.log"; echo "tf2_msgs: cmake --install failed (log: $BUILD/install.log)"; exit 1; }
echo "tf2_msgs (stand-in) built and installed into $VENV"
