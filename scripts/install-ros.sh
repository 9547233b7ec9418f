#!/usr/bin/env bash
# ROS 2 Jazzy in the project venv, without a system ROS:
#   - rclpy, the Fast DDS RMW and the common interfaces come as the ros-jazzy-* wheels from PyPI;
#   - vision_msgs, radar_msgs and tf2_msgs are not on PyPI: they are built here with the
#     ament/rosidl wheels from the project's own .msg files (ros_pkg/msg/{vision,radar}_msgs,
#     the same files the rosbags typestore registers, and scripts/ros_msgs/tf2_msgs) and
#     installed into the venv prefix.
# Usage: scripts/install-ros.sh [VENV] [CACHE_DIR]   (defaults: the repository's .venv and
# .cache/ros, or the environment variables ROS_VENV and ROS_CACHE_DIR). Idempotent: a stamp in
# CACHE_DIR records the hash of the inputs (this script, the .msg files, the pinned and installed
# wheel versions, the venv); when it matches and the packages import, nothing is done. A copy of
# the built files is kept in CACHE_DIR/stage, so a recreated venv gets them back without a build.
# Nothing to source afterwards: the ros-wheels-bootstrapper wheel (a dependency of rclpy)
# adds a .pth file that re-executes the venv's python once with LD_LIBRARY_PATH set.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$REPO/scripts/install-ros.sh"
VENV="${1:-${ROS_VENV:-$REPO/.venv}}"
CACHE="${2:-${ROS_CACHE_DIR:-$REPO/.cache/ros}}"
CONSTRAINTS="${ROS_CONSTRAINTS:-$REPO/constraints.txt}"

# A sourced system ROS 2 (e.g. /opt/ros/jazzy/setup.bash) wins: leave everything alone.
sys_py=/usr/bin/python3
[ -x "$sys_py" ] || sys_py=python3
if [ -n "${ROS_DISTRO:-}" ] && "$sys_py" -c 'import rclpy' >/dev/null 2>&1; then
  echo "install-ros: system ROS 2 '$ROS_DISTRO' is sourced and rclpy imports with $sys_py; nothing to do"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { echo "install-ros: no venv at $VENV (run make venv first)" >&2; exit 1; }
mkdir -p "$CACHE"
VENV="$(cd "$VENV" && pwd)"
CACHE="$(cd "$CACHE" && pwd)"
PY="$VENV/bin/python"
# The bootstrapper skips its re-exec when this guard is inherited (e.g. from another venv's python).
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

RUNTIME_WHEELS=(
  ros-jazzy-rclpy ros-jazzy-rmw-fastrtps-cpp ros-jazzy-ament-index-python
  ros-jazzy-builtin-interfaces ros-jazzy-std-msgs ros-jazzy-geometry-msgs ros-jazzy-sensor-msgs
  ros-jazzy-visualization-msgs ros-jazzy-diagnostic-msgs ros-jazzy-nav-msgs
  ros-jazzy-rcl-interfaces ros-jazzy-rosgraph-msgs ros-jazzy-unique-identifier-msgs
)
# All of ament_cmake* and rosidl*: the wheels' own dependency lists are incomplete (ament_cmake
# alone misses ament_cmake_include_directories, rosidl_default_generators misses the core ones).
BUILD_WHEELS=(
  catkin-pkg ros-jazzy-ament-package ros-jazzy-python-cmake-module
  ros-jazzy-ament-cmake ros-jazzy-ament-cmake-core ros-jazzy-ament-cmake-cppcheck
  ros-jazzy-ament-cmake-cpplint ros-jazzy-ament-cmake-export-definitions
  ros-jazzy-ament-cmake-export-dependencies ros-jazzy-ament-cmake-export-include-directories
  ros-jazzy-ament-cmake-export-interfaces ros-jazzy-ament-cmake-export-libraries
  ros-jazzy-ament-cmake-export-link-flags ros-jazzy-ament-cmake-export-targets
  ros-jazzy-ament-cmake-flake8 ros-jazzy-ament-cmake-gen-version-h ros-jazzy-ament-cmake-gmock
  ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-include-directories
  ros-jazzy-ament-cmake-libraries ros-jazzy-ament-cmake-pep257 ros-jazzy-ament-cmake-pytest
  ros-jazzy-ament-cmake-python ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-target-dependencies
  ros-jazzy-ament-cmake-test ros-jazzy-ament-cmake-uncrustify ros-jazzy-ament-cmake-vendor-package
  ros-jazzy-ament-cmake-version
  ros-jazzy-rosidl-adapter ros-jazzy-rosidl-cli ros-jazzy-rosidl-cmake
  ros-jazzy-rosidl-core-generators ros-jazzy-rosidl-core-runtime
  ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-default-runtime
  ros-jazzy-rosidl-dynamic-typesupport ros-jazzy-rosidl-dynamic-typesupport-fastrtps
  ros-jazzy-rosidl-generator-c ros-jazzy-rosidl-generator-cpp ros-jazzy-rosidl-generator-py
  ros-jazzy-rosidl-generator-type-description ros-jazzy-rosidl-parser ros-jazzy-rosidl-pycommon
  ros-jazzy-rosidl-runtime-c ros-jazzy-rosidl-runtime-cpp ros-jazzy-rosidl-typesupport-c
  ros-jazzy-rosidl-typesupport-cpp ros-jazzy-rosidl-typesupport-fastrtps-c
  ros-jazzy-rosidl-typesupport-fastrtps-cpp ros-jazzy-rosidl-typesupport-interface
  ros-jazzy-rosidl-typesupport-introspection-c ros-jazzy-rosidl-typesupport-introspection-cpp
)

# name|version|license|msg dir (versions of the upstream Jazzy releases these .msg files follow)
PACKAGES=(
  "tf2_msgs|0.36.14|BSD-3-Clause|$REPO/scripts/ros_msgs/tf2_msgs"
  "radar_msgs|0.2.2|Apache-2.0|$REPO/ros_pkg/msg/radar_msgs"
  "vision_msgs|4.1.1|Apache-2.0|$REPO/ros_pkg/msg/vision_msgs"
)

STAMP="$CACHE/stamp"
STAGE="$CACHE/stage"
LOGS="$CACHE/logs"
mkdir -p "$LOGS"
T_ALL=$(date +%s%N)

# say TEXT START_NS: one line with the seconds since START_NS.
say() {
  local ds=$((($(date +%s%N) - $2) / 100000000))
  printf 'install-ros: %-34s %4d.%d s\n' "$1" $((ds / 10)) $((ds % 10))
}

# step NAME LOG CMD...: run CMD with its output in LOG, print one line with the seconds taken,
# and the log's tail on failure.
step() {
  local name=$1 log=$2 t0 rc=0
  shift 2
  t0=$(date +%s%N)
  "$@" >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    echo "install-ros: $name FAILED (exit $rc); last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit $rc
  fi
  say "$name" "$t0"
}

inputs_hash() {
  {
    cat "$SCRIPT"
    local spec dir f
    for spec in "${PACKAGES[@]}"; do
      dir=${spec##*|}
      for f in "$dir"/*.msg; do echo "$f"; cat "$f"; done
    done
    echo "$VENV"
    grep -iE '^(ros-|catkin-pkg|empy|lark-parser|docutils|numpy)' "$CONSTRAINTS" || true
    "$PY" -c 'import sys, importlib.metadata as m
print(sys.version)
names = ("ros-", "numpy", "empy", "lark-parser", "catkin-pkg")
print(sorted(n + "==" + d.version for d in m.distributions()
  for n in [(d.metadata["Name"] or "").lower().replace("_", "-")] if n.startswith(names)))'
  } | sha256sum | cut -c1-16
}

# The packages import and their type support loads (serialising needs the C extensions).
check_import() {
  "$PY" -c 'import rclpy
from rclpy.serialization import serialize_message
import radar_msgs.msg, tf2_msgs.msg, vision_msgs.msg
for m in (vision_msgs.msg.Detection2DArray(), radar_msgs.msg.RadarTracks(), tf2_msgs.msg.TFMessage()):
    serialize_message(m)' >"$LOGS/check.log" 2>&1
}

done_line() { say "$1" "$T_ALL"; }

hash=$(inputs_hash)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ] && check_import; then
  done_line "up to date ($VENV)"
  exit 0
fi

step "pip: runtime wheels" "$LOGS/pip-runtime.log" \
  "$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "${RUNTIME_WHEELS[@]}"
step "pip: build tools" "$LOGS/pip-build.log" \
  "$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "${BUILD_WHEELS[@]}"

hash=$(inputs_hash)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ]; then
  if check_import; then
    done_line "up to date ($VENV)"
    exit 0
  fi
  # Same inputs, but the venv lost the built packages (recreated): copy them back.
  if [ -d "$STAGE$VENV" ]; then
    cp -a "$STAGE$VENV/." "$VENV/"
    if check_import; then
      done_line "restored from $STAGE"
      exit 0
    fi
  fi
fi
rm -f "$STAMP"

# package.xml and CMakeLists.txt for an interface package made of the .msg files in a folder;
# its dependencies are the other packages its fields name.
gen_package() {
  "$PY" - "$@" <<'EOF'
import re, shutil, sys
from pathlib import Path

name, version, license_, src, dst = sys.argv[1:6]
src, dst = Path(src), Path(dst)
shutil.rmtree(dst, ignore_errors=True)
(dst / "msg").mkdir(parents=True)
msgs, deps = [], set()
for f in sorted(src.glob("*.msg")):
    shutil.copy2(f, dst / "msg" / f.name)
    msgs.append(f"msg/{f.name}")
    for line in f.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            typ = re.sub(r"\[.*\]$", "", line.split()[0])
            if "/" in typ and typ.split("/")[0] != name:
                deps.add(typ.split("/")[0])
deps = sorted(deps)
depends = "\n".join(f"  <depend>{d}</depend>" for d in deps)
(dst / "package.xml").write_text(f"""<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>{version}</version>
  <description>{name}, built by scripts/install-ros.sh from the project's .msg files</description>
  <maintainer email="multimodal-perception@example.com">multimodal_perception</maintainer>
  <license>{license_}</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
{depends}
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
""")
(dst / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.16)
project({name})
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
foreach(dep {' '.join(deps)})
  find_package(${{dep}} REQUIRED)
endforeach()
rosidl_generate_interfaces(${{PROJECT_NAME}}
  {' '.join(msgs)}
  DEPENDENCIES {' '.join(deps)})
# The wheels' exported CMake targets name the include folders of the manylinux interpreter they
# were built with (/opt/python/cp311-cp311/include/python3.11 and its numpy). CMake refuses
# imported targets whose include folders do not exist, so point them at this venv's folders
# here rather than creating those paths on the machine (which would need root).
get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_t IN LISTS _imported)
  get_target_property(_inc ${{_t}} INTERFACE_INCLUDE_DIRECTORIES)
  if(_inc)
    list(TRANSFORM _inc REPLACE "^/opt/python/[^/]+/include/python[0-9.]+$" "${{MMP_PYTHON_INCLUDE}}")
    list(TRANSFORM _inc REPLACE "^/opt/python/[^/]+/lib/python[0-9.]+/site-packages/numpy/.*include$"
      "${{MMP_NUMPY_INCLUDE}}")
    set_target_properties(${{_t}} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${{_inc}}")
  endif()
endforeach()
ament_export_dependencies(rosidl_default_runtime)
ament_package()
""")
EOF
}

py_include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$PY" -c 'import numpy; print(numpy.get_include())')
[ -f "$py_include/Python.h" ] || { echo "install-ros: no Python.h in $py_include (install the Python headers)" >&2; exit 1; }
export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
jobs=$(nproc 2>/dev/null || echo 2)

# Take the files of the previous build out of the venv before installing the new one.
if [ -d "$STAGE$VENV" ]; then
  (cd "$STAGE$VENV" && find . ! -type d) | while IFS= read -r f; do rm -f "$VENV/$f"; done
fi
rm -rf "$STAGE" "$CACHE/src" "$CACHE/build"
for spec in "${PACKAGES[@]}"; do
  IFS='|' read -r name version license_ dir <<<"$spec"
  src="$CACHE/src/$name" bld="$CACHE/build/$name" log="$LOGS/$name.log"
  gen_package "$name" "$version" "$license_" "$dir" "$src"
  build() {
    cmake -S "$src" -B "$bld" -DBUILD_TESTING=OFF \
      -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
      -DMMP_PYTHON_INCLUDE="$py_include" -DMMP_NUMPY_INCLUDE="$np_include" &&
      cmake --build "$bld" -j "$jobs" &&
      DESTDIR="$STAGE" cmake --install "$bld" &&
      cp -a "$STAGE$VENV/." "$VENV/"
  }
  step "build $name" "$log" build
done

check_import || {
  echo "install-ros: the built packages do not import with $PY:" >&2
  cat "$LOGS/check.log" >&2
  exit 1
}
echo "$hash" >"$STAMP"
done_line "done ($VENV)"
