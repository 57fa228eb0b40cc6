"""Building a frozen settings dataclass from a dict read from a file (a checkpoint's JSON, a YAML config),
strictly: an unknown key is a file written for other code, and failing on it beats ignoring a setting."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, Mapping, TypeVar

C = TypeVar("C")


def from_dict_strict(cls: type[C], d: Mapping[str, Any], what: str,
                     convert: Callable[[str, Any], Any] | None = None) -> C:
    """``cls(**d)``, after checking every key names a field of the dataclass ``cls``.

    Args:
        cls: a dataclass type.
        d: field name -> value (JSON/YAML values: lists where the dataclass holds tuples).
        what: what the fields are, for the error message ("architecture fields").
        convert: ``(name, value) -> value`` applied to every item first (lists back to tuples); None keeps them.

    Returns:
        The dataclass instance.

    Raises:
        ValueError: a key that is not a field, "unknown {what} [...]".
    """
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} {unknown}")
    return cls(**({k: convert(k, v) for k, v in d.items()} if convert else dict(d)))
