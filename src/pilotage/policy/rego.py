"""``rego:``: the embedded policy engine, Rego evaluated in-process with regopy (rego-cpp).

Policies are Rego v1 modules (``package pilotage.<action>``, ``deny contains msg if { ... }``). The engine
loads the bundled policies shipped in ``pilotage/policy/bundled`` and then every ``*.rego`` file below each
folder of ``policy_dirs`` (``./policies`` by default). Files declaring the same package add rules to it, so a
user policy can tighten a bundled one (a partial ``deny`` set is the union of every file's rules).

Evaluation of ``action`` reads ``data.pilotage.<action>.deny`` (and, when the package defines it, the optional
``needs_approval`` set) against the input document; the verdict follows :func:`~pilotage.policy.base.make_verdict`
(members may be strings or ``{"msg", "rule", "file", "line"}`` objects). Fail closed (DESIGN.md section 6): a
policy that does not compile, an evaluation error, a package that does not exist, a ``deny`` that is not a set, or
an evaluation slower than ``timeout_s`` (default 5 s) give a deny verdict whose reason says so.

Cost (measured with regopy 1.5.2, one core): loading reads the files, parses them, smoke-tests every package
once with an empty input and compiles a bundle (rego-cpp's bytecode plan, one entrypoint per package): about
30 ms, most of it loading the rego-cpp library, once per engine. Each :meth:`RegoPolicyEngine.evaluate` then
runs the compiled plan: about 0.05 ms for the ``deploy``/``promote``/``rollback``/``scale`` policies, and for
``merge`` about 0.17 ms per dependency (3.5 ms for 20, 50 ms for 300: the licence matching is string work per
dependency × allow-listed id), plus the JSON encoding of the input. With ``compiled=False`` every evaluation
goes through ``Interpreter.query``, which recompiles all modules on each call (about 1-2 ms more) — the
fallback if the bytecode VM misbehaves.

The smoke test exists because regopy's bundle VM crashed the process (SIGSEGV) on a package that mixes a
complete ``deny := ...`` with partial ``deny contains ...`` rules, while ``Interpreter.query`` reports the
same package as an error; any package that errors under ``query`` is refused before the bundle is built.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pilotage.errors import InputError
from pilotage.policy.base import DEFAULT_TIMEOUT_S, PolicyEngine, Verdict, encode_input, make_verdict, no_verdict

if TYPE_CHECKING:
    from regopy import Bundle, Interpreter, Output

    from pilotage.settings import Settings

__all__ = ["PolicySource", "RegoPolicyEngine", "bundled_sources"]

_T = TypeVar("_T")

#: Where the bundled policies live (a folder of the ``pilotage.policy`` package, shipped as package data).
BUNDLED_PACKAGE = "pilotage.policy"
BUNDLED_FOLDER = "bundled"

_PACKAGE_RE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", re.MULTILINE)
_ACTION_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_SYNTAX_HINT = "correct the Rego v1 syntax (package ...; deny contains msg if { ... }), see https://www.openpolicyagent.org/docs/policy-language"


@dataclass(frozen=True)
class PolicySource:
    """One Rego module as loaded.

    Attributes:
        name: display path: ``bundled/merge.rego`` for a bundled policy, the path as found below the user folder
            (``policies/extra.rego``) otherwise; also the module name given to rego-cpp, so its errors name it.
        text: the Rego source.
        package: the declared package (``pilotage.merge``), or None when the file declares none.
    """

    name: str
    text: str
    package: str | None

    @property
    def action(self) -> str | None:
        """The action this module defines rules for (``merge`` for ``package pilotage.merge``), or None."""
        if self.package and self.package.startswith("pilotage."):
            return self.package[len("pilotage.") :]
        return None


@dataclass
class _Compiled:
    interpreter: Interpreter
    bundle: Bundle | None
    files_by_action: dict[str, list[str]] = field(default_factory=dict)
    #: actions whose package defines the optional ``needs_approval`` set
    approval_actions: set[str] = field(default_factory=set)


def _source(name: str, text: str) -> PolicySource:
    match = _PACKAGE_RE.search(text)
    return PolicySource(name=name, text=text, package=match.group(1) if match else None)


def bundled_sources() -> list[PolicySource]:
    """Return the policies shipped with Pilotage (``pilotage/policy/bundled/*.rego``), sorted by name."""
    folder = resources.files(BUNDLED_PACKAGE).joinpath(BUNDLED_FOLDER)
    out = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".rego") and entry.is_file():
            out.append(_source(f"bundled/{entry.name}", entry.read_text(encoding="utf-8")))
    return out


def _user_sources(policy_dirs: Sequence[Path]) -> list[PolicySource]:
    out = []
    for folder in policy_dirs:
        if folder.is_file() and folder.suffix == ".rego":
            files = [folder]
        elif folder.is_dir():
            files = sorted(path for path in folder.rglob("*.rego") if path.is_file())
        else:
            continue  # a missing folder is fine: no user policies
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"policy {path} cannot be read: {exc}", hint=f"make {path} a readable UTF-8 file", path=path
                ) from exc
            out.append(_source(str(path), text))
    return out


def _length_prefixed(text: str, start: int) -> tuple[str, int] | None:
    """Read ``N:<N characters>`` (rego-cpp's error S-expression strings) at ``start``; return (string, end)."""
    match = re.compile(r"(\d+):").match(text, start)
    if match is None:
        return None
    end = match.end() + int(match.group(1))
    return text[match.end() : end], end


def _parse_rego_error(message: str) -> tuple[str | None, int | None, str]:
    """Return (module name, character offset, first error message) from a rego-cpp error text.

    rego-cpp reports errors as an S-expression: ``(rego-errorseq (error 8:bad.rego|44|2 (errormsg 24:Invalid
    boolean operator) ...))`` where strings are length-prefixed and ``|44|2`` is the offset and length of the
    offending text in the module. Texts that are not in this form are returned whole as the message.
    """
    name: str | None = None
    offset: int | None = None
    at = message.find("(error ")
    if at >= 0:
        parsed = _length_prefixed(message, at + len("(error "))
        if parsed is not None:
            name = parsed[0] or None
            where = re.compile(r"\|(\d+)\|(\d+)").match(message, parsed[1])
            offset = int(where.group(1)) if where else None
    text = message.strip().splitlines()[0] if message.strip() else "unknown error"
    at = message.find("(errormsg ")
    if at >= 0:
        parsed = _length_prefixed(message, at + len("(errormsg "))
        if parsed is not None:
            text = parsed[0]
    return name, offset, text


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte ``offset`` into ``text`` (rego-cpp offsets count UTF-8 bytes)."""
    head = text.encode("utf-8")[:offset].decode("utf-8", errors="replace")
    line = head.count("\n") + 1
    return line, len(head) - (head.rfind("\n") + 1) + 1


def _output_error(output: Output) -> str:
    """Best-effort first error message of a failed regopy ``Output`` (its node tree holds ``errormsg`` nodes)."""
    try:
        from regopy import NodeKind
        from regopy.rego_shared import rego_node_value

        stack = [output.node()]
        while stack:
            node = stack.pop()
            if node.kind == NodeKind.ErrorMessage:
                return str(rego_node_value(node._impl))
            stack.extend(node.at(i) for i in reversed(range(len(node))))
    except Exception:  # the message is a nicety; the verdict is a deny either way
        pass
    return "evaluation failed (conflicting rule values or a runtime error in the policy)"


class RegoPolicyEngine(PolicyEngine):
    """Evaluate Rego v1 policies in-process with regopy; the default engine (``rego:``).

    Args:
        policy_dirs: user policy folders (``[Path("policies")]`` in the settings); every ``*.rego`` below each is
            loaded, a missing folder is skipped; a path to a single ``.rego`` file is accepted too.
        data: the base document the policies read as ``data`` (e.g. ``{"license_allowlist": [...]}`` from
            :class:`~pilotage.settings.Settings`); must be JSON-serialisable.
        bundled: also load the policies shipped in ``pilotage/policy/bundled`` (default True).
        compiled: evaluate a compiled bundle (fast, default) or re-query the interpreter each call (see module doc).
        timeout_s: seconds one evaluation (or the load of the policies) may take; a slower one is a deny, and the
            interpreter it ran on is abandoned (see :meth:`evaluate`).

    The constructor does no I/O; policies load on the first :meth:`check` or :meth:`evaluate`. A policy set that
    compiled is kept until :meth:`reload`; one that failed is re-read on every evaluation (each denies) so a fix
    takes effect without a restart. Safe to call from several threads (one lock around the interpreter).
    """

    url = "rego:"

    def __init__(
        self,
        policy_dirs: Sequence[Path] | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        bundled: bool = True,
        compiled: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.policy_dirs = [Path(p) for p in (policy_dirs or [])]
        self.data = dict(data or {})
        self.bundled = bundled
        self.compiled = compiled
        self.timeout_s = timeout_s
        self._state: _Compiled | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RegoPolicyEngine:
        """Build the engine from settings: ``policy_dirs`` and ``data = {"license_allowlist": ...}``."""
        return cls(policy_dirs=settings.policy_dirs, data={"license_allowlist": list(settings.license_allowlist)})

    # -- loading -------------------------------------------------------------------------------------------

    def sources(self) -> list[PolicySource]:
        """Read and return every policy module: bundled first, then user folders in order (reads files).

        Raises:
            InputError: a user policy file cannot be read or is not UTF-8.
        """
        return (bundled_sources() if self.bundled else []) + _user_sources(self.policy_dirs)

    def _compile(self) -> _Compiled:
        from regopy import Interpreter, LogLevel, RegoError

        sources = self.sources()
        by_name = {source.name: source for source in sources}
        interpreter = Interpreter()
        interpreter.log_level = LogLevel.NONE  # errors come back as exceptions; don't print them on stdout
        try:
            interpreter.add_data_json(json.dumps(self.data, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"policy data is not JSON-serialisable: {exc}", hint="give the engine plain JSON data"
            ) from exc
        except RegoError as exc:
            raise InputError(f"policy data was refused by rego: {_parse_rego_error(str(exc))[2]}") from exc
        files_by_action: dict[str, list[str]] = {}
        for source in sources:
            if not source.text.strip():
                raise InputError(f"policy {source.name} is empty", hint="add a package declaration and rules")
            try:
                interpreter.add_module(source.name, source.text)
            except RegoError as exc:
                raise self._syntax_error(source, str(exc), by_name) from exc
            if source.action is not None:
                files_by_action.setdefault(source.action, []).append(source.name)
        interpreter.set_input_term("{}")
        for action in files_by_action:
            if self._query_problem(interpreter, action) is not None:
                raise self._blame(sources, files_by_action)
        approval_actions = {a for a in files_by_action if self._defines(interpreter, a, "needs_approval")}
        bundle = None
        if self.compiled and files_by_action:
            entrypoints = [f"pilotage/{action.replace('.', '/')}/deny" for action in files_by_action]
            entrypoints += [f"pilotage/{a.replace('.', '/')}/needs_approval" for a in sorted(approval_actions)]
            try:
                bundle = interpreter.build(None, entrypoints)
            except RegoError as exc:
                raise self._syntax_error(None, str(exc), by_name) from exc
        return _Compiled(
            interpreter=interpreter, bundle=bundle, files_by_action=files_by_action, approval_actions=approval_actions
        )

    @staticmethod
    def _defines(interpreter: Interpreter, action: str, rule: str) -> bool:
        """True when ``data.pilotage.<action>.<rule>`` is defined (evaluated once with the empty input)."""
        from regopy import RegoError

        try:
            output = interpreter.query(f"data.pilotage.{action}.{rule}")
        except (RegoError, ValueError):
            return True  # defined but failing: evaluation will report it and deny
        return not output.ok() or bool(output.results and output.results[0].expressions)

    @staticmethod
    def _syntax_error(source: PolicySource | None, message: str, by_name: Mapping[str, PolicySource]) -> InputError:
        name, offset, text = _parse_rego_error(message)
        found = by_name.get(name or "") or source
        where = found.name if found else "(unknown file)"
        line_col = ""
        if found is not None and offset is not None:
            line, col = _line_col(found.text, offset)
            where, line_col = f"{where}:{line}:{col}", f" at line {line}"
        label = found.name if found else "set"
        return InputError(
            f"policy {label} does not parse{line_col}: {text}",
            hint=f"{_SYNTAX_HINT} ({where})",
            path=found.name if found else None,
        )

    def _blame(self, sources: Sequence[PolicySource], files_by_action: Mapping[str, list[str]]) -> InputError:
        """Find which package makes the policy set fail to evaluate (rego-cpp compiles all modules together).

        Each package is evaluated alone (its modules plus those outside ``data.pilotage``, e.g. helper
        libraries); the first that fails is named with its files. Only runs when something failed.
        """
        from regopy import Interpreter, LogLevel

        shared = [source for source in sources if source.action is None]
        first: tuple[str, list[str], str] | None = None
        for action, files in files_by_action.items():
            alone = Interpreter()
            alone.log_level = LogLevel.NONE
            alone.add_data_json(json.dumps(self.data, allow_nan=False))
            for source in [*shared, *(s for s in sources if s.action == action)]:
                alone.add_module(source.name, source.text)
            alone.set_input_term("{}")
            problem = self._query_problem(alone, action)
            if problem is not None:
                first = (action, files, problem)
                break
        if first is None:
            names = [source.name for source in sources]
            return InputError(
                f"policy set {', '.join(names)} does not evaluate together: packages conflict",
                hint="look for rules defined twice in different packages or files",
            )
        action, files, problem = first
        return InputError(
            f"policy {', '.join(files)} does not evaluate: data.pilotage.{action}.deny: {problem}",
            hint=f"fix the rules of package pilotage.{action} (a rule must be either complete or partial)",
            path=files[-1],
        )

    @staticmethod
    def _query_problem(interpreter: Interpreter, action: str) -> str | None:
        """Evaluate ``data.pilotage.<action>.deny`` through the (safe) interpreter path; return an error or None."""
        from regopy import RegoError

        try:
            output = interpreter.query(f"data.pilotage.{action}.deny")
        except json.JSONDecodeError as exc:
            return _parse_rego_error(exc.doc)[2]
        except (RegoError, ValueError) as exc:
            return _parse_rego_error(str(exc))[2]
        return None if output.ok() else _output_error(output)

    def _loaded(self) -> _Compiled:
        if self._state is None:
            finished, value = _with_deadline(self._compile, self.timeout_s)
            if not finished:
                raise InputError(
                    f"policy set did not load within {self.timeout_s:g} s (a rule that never terminates on the "
                    "empty input?)",
                    hint="simplify the rules that iterate over large ranges, then run pilotage policy check",
                )
            self._state = value
        return self._state

    def check(self) -> None:
        """Re-read, parse, smoke-test and compile every policy now (what ``pilotage policy check`` runs).

        Raises:
            InputError: a policy does not parse, does not evaluate, or does not load within ``timeout_s``; names
                the file and the line when known.
        """
        with self._lock:
            self._state = None
            self._loaded()

    def reload(self) -> None:
        """Forget the compiled policies; the next call reads the files again."""
        with self._lock:
            self._state = None

    def actions(self) -> dict[str, list[str]]:
        """Return ``{action: [files defining package pilotage.<action>]}`` (loads the policies).

        Raises:
            InputError: as :meth:`check`.
        """
        with self._lock:
            return {action: list(files) for action, files in self._loaded().files_by_action.items()}

    # -- evaluation ----------------------------------------------------------------------------------------

    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        """Evaluate ``data.pilotage.<action>.deny`` (and ``needs_approval``) on ``input`` (fail closed).

        The evaluation runs in a worker thread and the caller waits at most ``timeout_s``: rego-cpp cannot be
        interrupted, so a policy that takes longer gets a deny ("policy engine timeout") and its interpreter is
        abandoned to the worker, which keeps one core busy until it finishes; the next evaluation loads a fresh
        interpreter (about 30 ms).

        Args:
            action: the package below ``data.pilotage`` (``commit``, ``merge``, ``deploy``, ``promote``, ...).
            input: the input document (a JSON object).

        Returns:
            The verdict (:func:`~pilotage.policy.base.make_verdict`); ``policies`` =
            ``["data.pilotage.<action>", <files defining it>...]``.

        Raises:
            InputError: ``input`` is not JSON-serialisable (NaN and infinities included) or not an object.
        """
        package = f"data.pilotage.{action}"
        text = encode_input(action, input)

        def deny(reason: str, files: Sequence[str] = ()) -> Verdict:
            return no_verdict(action, reason, policies=[package, *files], engine=self.url)

        if not _ACTION_RE.match(action):
            return deny(f"no policy defines {package} (not a valid package name)")
        with self._lock:
            previous = self._state
            finished, value = _with_deadline(lambda: self._answer(previous, action, text), self.timeout_s)
            if not finished:
                self._state = None  # the worker still holds that interpreter: never share it again
                return deny(
                    f"policy engine timeout: {package} gave no answer within {self.timeout_s:g} s "
                    "(a rule that takes too long or never terminates)",
                    previous.files_by_action.get(action, []) if previous is not None else [],
                )
            state, outcome = value
            self._state = state
        if isinstance(outcome, str):
            return deny(outcome, state.files_by_action.get(action, []) if state is not None else [])
        denied, pending = outcome
        files = state.files_by_action.get(action, []) if state is not None else []
        return make_verdict(action, denied, pending, input, policies=[package, *files], engine=self.url)

    def _answer(
        self, state: _Compiled | None, action: str, input_json: str
    ) -> tuple[_Compiled | None, tuple[list[Any], list[Any]] | str]:
        """Load the policies when ``state`` is None, then evaluate both sets (runs in the worker thread)."""
        if state is None:
            try:
                state = self._compile()
            except InputError as exc:
                return None, f"policy engine error: {exc.message}"
        if action not in state.files_by_action:
            return state, f"no policy defines data.pilotage.{action}"
        denied = self._run(state, action, input_json, "deny")
        if isinstance(denied, str):
            return state, denied
        pending: list[Any] = []
        if action in state.approval_actions:
            asked = self._run(state, action, input_json, "needs_approval")
            if isinstance(asked, str):
                return state, asked
            pending = asked
        return state, (denied, pending)

    def _run(self, state: _Compiled, action: str, input_json: str, rule: str = "deny") -> list[Any] | str:
        """Evaluate one set rule; return its members, or a ``str`` reason when the engine could not answer."""
        from regopy import NodeKind, RegoError

        query = f"data.pilotage.{action}.{rule}"
        try:
            state.interpreter.set_input_term(input_json)
            if state.bundle is not None:
                output = state.interpreter.query_bundle_entrypoint(
                    state.bundle, f"pilotage/{action.replace('.', '/')}/{rule}"
                )
            else:
                output = state.interpreter.query(query)
        except json.JSONDecodeError as exc:  # regopy could not decode a result that is an error S-expression
            return f"policy engine error: {query}: {_parse_rego_error(exc.doc)[2]}"
        except (RegoError, ValueError) as exc:
            return f"policy engine error: {query}: {_parse_rego_error(str(exc))[2]}"
        if not output.ok():
            return f"policy engine error: {query}: {_output_error(output)}"
        if not output.results or not output.results[0].expressions:
            return f"no policy defines {query} (the package has no {rule} rule)"
        term = output.expressions(0).at(0)
        if term.kind != NodeKind.Set:
            return f"policy engine error: {query} is not a set (use: {rule} contains msg if {{ ... }})"
        value = output.results[0].expressions[0]
        return list(value) if isinstance(value, list) else [value]

    def close(self) -> None:
        """Drop the compiled policies and the interpreter. Idempotent."""
        with self._lock:
            self._state = None


def _with_deadline(work: Callable[[], _T], timeout_s: float) -> tuple[bool, _T]:
    """Run ``work`` in a daemon thread and wait at most ``timeout_s``; return (finished, its value).

    regopy calls into rego-cpp through ctypes, which releases the GIL, so the caller's wait is not blocked by a
    long evaluation. An exception raised by ``work`` is re-raised here.

    Raises:
        Exception: whatever ``work`` raised.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=target, name="pilotage-rego", daemon=True)
    worker.start()
    worker.join(max(timeout_s, 0.0))
    if worker.is_alive():
        return False, cast(_T, None)
    if "error" in box:
        raise box["error"]
    return True, cast(_T, box["value"])
