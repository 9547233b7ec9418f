"""Parameters: one schema for the rclpy node and the ROS-free pipeline.

Every parameter has a dotted name (as ROS 2 flattens nested YAML), a type, a default, a
range and a description. The node declares them from this table with descriptors; the
replay path reads the same ROS 2 parameter file (``/**: ros__parameters: ...``) with
``yaml.safe_load``. A bad value is refused with a message naming the parameter.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .param_schema import (  # noqa: F401  (re-exported: the schema's names, one import)
    CAMERA_FIELDS,
    DEFAULT_THRESHOLD,
    MS,
    PARAMETERS,
    SPECS,
    ParamSpec,
    threshold_key,
)
from .yaml_io import read_yaml


class ParameterError(ValueError):
    """A parameter value outside its type, range or choices."""


def camera_specs(camera: str) -> list[ParamSpec]:
    """The override parameters of one rig camera."""
    return [
        ParamSpec(f"cameras.{camera}.{f.name}", f.default, f.description, f.min, f.max)
        for f in CAMERA_FIELDS
    ]


def _spec(name: str) -> ParamSpec | None:
    if name in SPECS:
        return SPECS[name]
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "cameras" and parts[1]:
        field = next((f for f in CAMERA_FIELDS if f.name == parts[2]), None)
        if field is not None:
            return ParamSpec(name, field.default, field.description, field.min, field.max)
    return None


def validate(name: str, value: Any) -> Any:
    spec = _spec(name)
    if spec is None:
        close = difflib.get_close_matches(name, SPECS, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ParameterError(f"unknown parameter {name!r}{hint}")
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, spec.kind) or isinstance(value, bool) != (spec.kind is bool):
        raise ParameterError(
            f"parameter {name}={value!r}: expected {spec.kind.__name__}, got {type(value).__name__}"
        )
    if spec.kind in (int, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ParameterError(f"parameter {name}={value!r}: must be finite")
        below = spec.min is not None and value < spec.min
        if below or (spec.max is not None and value > spec.max):
            raise ParameterError(f"parameter {name}={value!r}: outside [{spec.min}, {spec.max}]")
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(f"parameter {name}={value!r}: expected one of {spec.choices}")
    return value


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Parameters:
    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def with_overrides(self, overrides: dict[str, Any]) -> Parameters:
        merged = dict(self.values)
        for name, value in overrides.items():
            merged[name] = validate(name, value)
        return Parameters(merged)


def defaults() -> Parameters:
    return Parameters({p.name: p.default for p in PARAMETERS})


def load_parameters(path: str | Path | None = None) -> Parameters:
    """Defaults, overridden by a ROS 2 parameter file (``<node or /**>: ros__parameters``)."""
    params = defaults()
    if path is None:
        return params
    doc = read_yaml(path, "parameter file") or {}
    if not isinstance(doc, dict):
        raise ParameterError(f"{path}: expected a mapping at the top level")
    sections = [
        v["ros__parameters"] for v in doc.values() if isinstance(v, dict) and "ros__parameters" in v
    ]
    if not sections:
        raise ParameterError(f"{path}: no '<node>: ros__parameters:' section")
    for section in sections:
        try:
            params = params.with_overrides(_flatten(section))
        except ParameterError as exc:
            raise ParameterError(f"{path}: {exc}") from None
    return params
