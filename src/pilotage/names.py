"""Names that become path components: service names and run ids (issue #15, finding 8).

A service name ends up in file names (service logs ``<service>-<version>-<port>.log``, incident files, reports)
and a run id in folder names (``.pilotage/runs/<run id>``). Both come from the command line or from a
``flow.started`` event any process that can write the log may have written, so both are checked against one
strict pattern before they are used: :data:`NAME_PATTERN` — a letter or digit, then up to 62 letters, digits,
``.``, ``_`` or ``-``, and never ``..``. Nothing that passes can be a separator, a parent reference, an absolute
path, a hidden file or an option (``-x``).
"""

from __future__ import annotations

import re

from pilotage.errors import InputError

__all__ = ["NAME_PATTERN", "check_name", "is_name", "name_from", "valid_name"]

#: A name that is safe as one path component (63 characters at most, the DNS label length).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
_NAME = re.compile(NAME_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_name(value: object) -> bool:
    """Return True when ``value`` is a string matching :data:`NAME_PATTERN` without ``..``."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and ".." not in value


def check_name(value: str, what: str) -> str:
    """Return ``value`` when it is a safe name (:func:`is_name`).

    Args:
        value: the candidate, e.g. the ``--service`` option.
        what: what it names, for the message (``"--service"``, ``"run id"``).

    Raises:
        InputError: ``value`` could escape its folder or is not a plain name; the message shows the pattern.
    """
    if not is_name(value):
        raise InputError(
            f"{what} {value!r} is not a valid name: it becomes a file or folder name, so it must match "
            f"{NAME_PATTERN} without '..'",
            hint=f"pass {what} with letters, digits, '.', '_' or '-' only, e.g. checkout",
        )
    return value


def valid_name(value: str) -> str:
    """Pydantic validator form of :func:`check_name` (``AfterValidator(valid_name)``).

    Raises:
        ValueError: ``value`` is not a safe name.
    """
    if not is_name(value):
        raise ValueError(f"{value!r} is not a valid name ({NAME_PATTERN}, no '..'): it becomes a path component")
    return value


def name_from(text: str, default: str = "service") -> str:
    """Return a safe name derived from ``text`` (a spec file or folder name): unsafe runs become ``-``.

    Used for names Pilotage derives itself, where refusing would be unhelpful; a name the user passes is
    checked with :func:`check_name` instead.
    """
    name = _UNSAFE.sub("-", text).replace("..", "-").lstrip("._-")[:63].rstrip("._-")
    return name if is_name(name) else default
