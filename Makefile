# one2any_ros on a plain machine (no ROS install needed): a venv with the ROS 2 wheels, our
# interfaces compiled with cmake into it, and the Python package imported from this source tree.
#
#   make            create .venv (once), compile srv/ + msg/, install into .venv  (no-change rebuild ~1 s)
#   make test       build, then run the test suite   (PYTEST_ARGS="-k interfaces -m 'not slow'" to filter)
#   make demo       build, then `.venv/bin/one2any demo`   (DEMO_ARGS="..." are passed on)
#   make clean      remove build/ (the venv stays);  make distclean  also removes .venv
#
# In a full ROS 2 workspace use colcon instead: `colcon build --packages-select one2any_ros`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := all
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
BUILD := $(CURDIR)/build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_ARGS ?=
DEMO_ARGS ?=

# ROS writes logs (and the node its saved reference) under ROS_HOME: keep them in the project.
export ROS_HOME ?= $(CURDIR)/.ros
export ROS_LOG_DIR ?= $(ROS_HOME)/log

# Stamps: pip runs again only when requirements.txt (or the wheel fix) changes; cmake is configured
# again only when the venv or this file changes (cmake --build itself re-runs it on CMakeLists edits).
DEPS_STAMP := $(VENV)/.one2any-deps.stamp
CONFIG_STAMP := $(BUILD)/.one2any-configured.stamp

# The generators must see only this venv's ament packages (also when a ROS setup.bash is sourced);
# without AMENT_PREFIX_PATH the configure fails with "No 'rosidl_typesupport_c' found".
CMAKE_ENV := env AMENT_PREFIX_PATH=$(VENV) CMAKE_PREFIX_PATH=$(VENV) PYTHONUTF8=1

.PHONY: all build install test demo clean distclean

all: build
install: build

$(DEPS_STAMP): requirements.txt tools/fix_ros_wheel_cmake.py
	@test -x $(VPY) || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VPY) tools/fix_ros_wheel_cmake.py $(VENV)
	@touch $@

$(CONFIG_STAMP): $(DEPS_STAMP) Makefile
	$(CMAKE_ENV) cmake -S $(CURDIR) -B $(BUILD) --log-level=WARNING \
	  -DCMAKE_INSTALL_PREFIX=$(VENV) \
	  -DPython3_EXECUTABLE=$(VPY) \
	  -DONE2ANY_SOURCE_INSTALL=ON \
	  -DBUILD_TESTING=OFF
	@touch $@

build: $(CONFIG_STAMP)
	@$(CMAKE_ENV) cmake --build $(BUILD) -j $(JOBS) > $(BUILD)/build.log 2>&1 \
	  || { cat $(BUILD)/build.log; echo "make: cmake --build failed (log: build/build.log)"; exit 1; }
	@$(CMAKE_ENV) cmake --install $(BUILD) > $(BUILD)/install.log 2>&1 \
	  || { cat $(BUILD)/install.log; echo "make: cmake --install failed (log: build/install.log)"; exit 1; }
	@tools/build_tf2_msgs.sh $(VENV) $(BUILD)/tf2_msgs
	@tools/build_standin_msgs.sh vision_msgs $(VENV) $(BUILD)/vision_msgs
	@echo "one2any_ros built and installed into $(VENV) (logs: build/build.log, build/install.log)"

# pytest's exit code 5 means that no test was collected (only possible with a filter in PYTEST_ARGS):
# say so and do not fail.
test: build
	@mkdir -p $(ROS_LOG_DIR)
	@rc=0; $(VPY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no test matched (PYTEST_ARGS=$(PYTEST_ARGS))"; rc=0; fi; \
	exit $$rc

demo: build
	@mkdir -p $(ROS_LOG_DIR)
	$(VENV)/bin/one2any demo $(DEMO_ARGS)

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)
