r"""Reproduction commands: one ``curl`` line per recorded request, quoted for a POSIX shell, secrets masked.

Split from :mod:`pilotage.testing.schemathesis_runner` (now used by :mod:`~pilotage.testing.schemathesis_results`): the
request is the one schemathesis records in its NDJSON report (``{"method", "uri", "headers": {name: [values]},
"body": {"$base64": ...}}``). Bodies that are UTF-8 text without control characters are single-quoted
(:func:`shlex.quote`); others are written as bash ANSI-C strings (``$'\x00...'``).
"""

from __future__ import annotations

import base64
import shlex
from typing import Any

from pilotage.secrets import masker

__all__ = ["curl_command"]

#: Request headers left out of reproduction commands (schemathesis' own bookkeeping).
_NOISE_HEADERS = {"x-schemathesis-testcaseid", "user-agent", "accept-encoding", "accept", "connection"}


def _ansi_c_quote(data: bytes) -> str:
    out = []
    for byte in data:
        char = chr(byte)
        if char == "'" or char == "\\":
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def _quote_body(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _ansi_c_quote(data)
    if any(ord(c) < 0x20 and c not in "\t" for c in text):
        return _ansi_c_quote(data)
    return shlex.quote(text)


def curl_command(request: dict[str, Any]) -> str:
    """Return a curl command line reproducing a recorded request, registered secrets masked (``[masked]``).

    Args:
        request: the NDJSON interaction request: ``{"method", "uri", "headers": {name: [values]},
            "body": {"$base64": ...} | None}``.
    """
    parts = ["curl", "-X", str(request.get("method", "GET"))]
    for name, values in (request.get("headers") or {}).items():
        if name.lower() in _NOISE_HEADERS:
            continue
        for value in values if isinstance(values, list) else [values]:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    body = request.get("body")
    if isinstance(body, dict) and "$base64" in body:
        parts += ["-d", _quote_body(base64.b64decode(body["$base64"]))]
    parts.append(shlex.quote(str(request.get("uri", ""))))
    return masker().mask_text(" ".join(parts))
