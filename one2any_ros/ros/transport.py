"""The transport settings the package ships: a Fast DDS profile for camera-sized images (docs/ros.md,
Transport).

``apply_default_transport()`` points Fast DDS at ``fastdds_profile.xml`` unless the user has chosen a
transport (a profiles file or FASTDDS_BUILTIN_TRANSPORTS) or another RMW. Call it before ``rclpy.init``.
``python -m one2any_ros.ros.transport`` prints the profile's path, for other processes (camera drivers):

    export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m one2any_ros.ros.transport)
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_PATH = Path(__file__).resolve().parent / "fastdds_profile.xml"
USER_SETTINGS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def apply_default_transport(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the shipped profile in ``environ`` (default: os.environ) when
    the user set none of USER_SETTINGS and the RMW is Fast DDS (the default). Returns the path it set,
    or None when it left the environment alone."""
    env = os.environ if environ is None else environ
    if any(env.get(k) for k in USER_SETTINGS):
        return None
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return None
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE_PATH)
    return str(PROFILE_PATH)


def transport_env(base: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) with the default transport applied: for child processes."""
    env = dict(os.environ if base is None else base)
    apply_default_transport(env)
    return env


if __name__ == "__main__":  # pragma: no cover
    print(PROFILE_PATH)
