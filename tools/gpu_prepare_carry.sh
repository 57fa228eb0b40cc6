#!/usr/bin/env bash
# Prepare on THIS machine what a training chunk on a lent GPU machine carries (docs/architecture.md,
# A lent GPU machine: nothing can be downloaded there; its python3 is 3.12 with torch, numpy, scipy,
# OpenCV, PyYAML, safetensors, tqdm, matplotlib):
#   .whl/  moderngl + glcontext wheels for CPython 3.12 (the OpenGL renderer; pybullet's 103 MB wheel cannot travel)
#   .gl/   the EGL/GL loader packages (libglvnd), unpacked there by tools/gpu_train_chunk.sh
# Both folders are git-ignored; name them in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl .gl
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
  -d .whl moderngl==5.13.0 glcontext==3.1.0
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update -qq
(cd .gl && apt-get $o download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .whl .gl
ls .whl .gl
