"""The one way Pilotage starts code from a run's repository: an allow-list environment, its own process group.

Generated code and the user's code under test are untrusted (issue #15, finding 2): a document can put a statement
into a generated module, and a repository's tests run whatever they contain. Everything Pilotage starts from a
run — the service versions (baseline, canary, the scratch instance of the test stage, a recovered environment),
the service's own tests and the generated ones (pytest), schemathesis, hypothesis' ghostwriter, the Locust load
test, the coverage run of ``graph ingest`` — gets the environment built by :func:`sandbox_env` and the launch
options of :func:`launch_options`:

* **environment: allow-list, not deny-list.** Only the variables a Python process needs to run
  (:data:`ALLOWED_VARS`: ``PATH``, ``HOME``, ``LANG``/``LC_*``, ``TZ``, ``TMPDIR``, ``PYTHONPATH``,
  ``VIRTUAL_ENV`` …) and the fault-injection switches ``PILOTAGE_FAULT_*`` are copied from the control plane's
  environment, plus the control-plane mark
  (``PILOTAGE_CONTROL_PLANE``: crash recovery finds orphans by it, see :mod:`pilotage.flows.recovery`), the run's
  test principal (``PILOTAGE_TEST_PRINCIPAL``, :mod:`pilotage.testing.credentials`), plus what
  the caller passes explicitly (``PILOTAGE_DB_PATH``, ``PILOTAGE_FAULT_*``, ``PILOTAGE_BASE_URL``,
  ``PILOTAGE_TEST_HEADERS`` for the test process only …). No other ``PILOTAGE_*`` setting, no token, approval
  key or cloud credential (``GITHUB_TOKEN``, ``AWS_*``, ``SSH_AUTH_SOCK`` …) reaches the child. Proxy variables
  are dropped and ``NO_PROXY=127.0.0.1,localhost`` set (the tools only talk to services on 127.0.0.1);
  ``PYTHONDONTWRITEBYTECODE=1`` keeps ``__pycache__`` out of the git worktree under test, and
  ``PYTHONUNBUFFERED=1`` keeps a log's stdout and stderr lines in order.
* **its own process group** (``start_new_session=True``): stopping it signals the group, so nothing it spawned
  survives; it cannot signal the control plane's group by accident.
* **stdin closed**, and a working directory the caller chooses inside the run's folder (the service folder in
  the run's repository, the report folder among the run's artefacts).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_PREFIXES", "ALLOWED_VARS", "CONTROL_PLANE_MARK", "launch_options", "sandbox_env"]

#: Variables copied from the control plane's environment into a run's processes (when set).
ALLOWED_VARS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "TERM",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
    "COMSPEC",
    "PATHEXT",
)
#: Prefixes of variables copied too: the locale categories, and the fault-injection switches of the generated
#: services (``PILOTAGE_FAULT_*``, :mod:`pilotage.runtime.faults`: test knobs, not secrets).
ALLOWED_PREFIXES = ("LC_", "PILOTAGE_FAULT_")
#: The control-plane mark (``<home>#<instance>``) that crash recovery finds orphans by; copied when set.
CONTROL_PLANE_MARK = "PILOTAGE_CONTROL_PLANE"
#: The run's test principal (issue 18, :mod:`pilotage.testing.credentials`): generated services authenticate
#: requests against it, the test tools and the load test send it; copied when set.
TEST_PRINCIPAL = "PILOTAGE_TEST_PRINCIPAL"
#: Always set in a run's processes.
FIXED = {
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",  # logs keep stdout and stderr in the order they were written
}


def sandbox_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the complete environment of a process started from a run.

    Args:
        extra: variables the child needs by design, set last (they win over the allow-list).
        base: the environment to copy the allowed variables from (default ``os.environ``).

    Returns:
        ``{name: value}``: the allowed variables of ``base``, the control-plane mark, :data:`FIXED`, ``extra``.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k in ALLOWED_VARS or k.startswith(ALLOWED_PREFIXES)}
    for name in (CONTROL_PLANE_MARK, TEST_PRINCIPAL):
        if name in source:
            env[name] = source[name]
    env.update(FIXED)
    env.update(extra or {})
    return env


def launch_options(cwd: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the keyword arguments that start a run's process (``subprocess.Popen``/``run``, asyncio's exec).

    Args:
        cwd: working directory (inside the run's folder).
        env: the complete environment, normally from :func:`sandbox_env` (default: ``sandbox_env()``).

    Returns:
        ``{"cwd", "env", "stdin": DEVNULL, "start_new_session": True}``.
    """
    return {
        "cwd": str(cwd),
        "env": dict(env) if env is not None else sandbox_env(),
        "stdin": subprocess.DEVNULL,
        "start_new_session": True,
    }
