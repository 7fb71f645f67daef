"""The change-request grammar of the design agent: deterministic, no LLM.

A request asks for one of three changes (matching ignores case; runs of spaces count as one; a final ``.`` is
ignored)::

    request       := add-resource | add-field | add-operation
    add-resource  := "add" [ARTICLE] NAME [KIND] "with" ["field" | "fields"] FIELDS
    add-field     := "add" [ARTICLE] ["field"|"fields"] NEWFIELDS ["field"|"fields"] ("to"|"on"|"for") [ARTICLE] TARGET
                     ("field"/"fields" exactly once, before or after NEWFIELDS)
    add-operation := "add" [ARTICLE] VERB ["operation" | "endpoint"] ("to" | "on" | "for") [ARTICLE] TARGET
    NAME      := WORD+        letters, digits, hyphens; no grammar word (to, on, for, with, and, field, operation)
    KIND      := support | resource | resources | endpoint | endpoints
    FIELDS    := FIELD ("," FIELD)* [("," | "and") FIELD]
    FIELD     := IDENT ":" TYPE ["?"]           "?" marks an optional field; every other field is required
    NEWFIELDS := NEWFIELD ("," NEWFIELD)* [("," | "and") NEWFIELD]
    NEWFIELD  := IDENT [":" TYPE] ["?"]         no TYPE: string; always optional (a required one would break clients)
    IDENT     := [A-Za-z_][A-Za-z0-9_]*         not "id" (the server assigns it)
    TYPE      := string | integer | number | boolean | date | date-time       (str, int, float, bool, datetime too)
    VERB      := list | get | create | update | delete
    TARGET    := WORD+ [schema | resource | resources | model | object | collection] | "/" PATH
                              an existing schema or collection of the document ("orders", "cart items", "/pet")
    ARTICLE   := a | an | the

Examples: ``Add discount code support with fields code:string, percent:integer`` (a new resource ``DiscountCode``
at ``/discount-codes`` and ``/discount-codes/{id}`` with two required fields); ``Add a tags field to orders`` (an
optional string property ``tags`` on the document's ``Order`` schema); ``Add a delete operation to orders``
(``DELETE`` on the document's ``/orders/{orderId}``). This module reads the words only; the names are resolved
against the document by :func:`pilotage.spec.evolve.plan_change`. Every refusal is one line with the grammar and,
where one exists, the closest reading that parses (``did you mean ...``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass, field

from pilotage.errors import InputError

__all__ = [
    "FIELD_TYPES",
    "GRAMMAR",
    "VERBS",
    "ParsedRequest",
    "field_request",
    "operation_request",
    "parse_request",
    "pluralize",
    "refusal",
    "singularize",
]

GRAMMAR = (
    "add NAME [support] with fields FIELD:TYPE[?], ... (a new resource) | add FIELD[:TYPE] field to SCHEMA (a new "
    "optional property) | add list|get|create|update|delete operation to RESOURCE - TYPE is one of string, integer, "
    'number, boolean, date, date-time; e.g. "Add discount code support with fields code:string, percent:integer", '
    '"Add a tags field to orders", "Add a delete operation to orders"'
)

#: Request field type → OpenAPI schema (JSON Schema subset shared by 3.0 and 3.1).
FIELD_TYPES: dict[str, dict[str, str]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "format": "int64"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "date-time": {"type": "string", "format": "date-time"},
}
#: The operations a request may add to an existing resource.
VERBS = ("list", "get", "create", "update", "delete")
_TYPE_ALIASES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "datetime": "date-time"}
#: Words a user means by a TYPE or a VERB the grammar spells otherwise: offered as "did you mean", never accepted.
_TYPE_HINTS = {"text": "string", "long": "integer", "int64": "integer", "double": "number", "decimal": "number",
               "money": "number", "float64": "number", "timestamp": "date-time", "time": "date-time"}  # fmt: skip
_VERB_HINTS = {"remove": "delete", "read": "get", "fetch": "get", "retrieve": "get", "show": "get", "edit": "update",
               "replace": "update", "modify": "update", "change": "update", "put": "update", "patch": "update",
               "post": "create", "new": "create", "find": "list", "search": "list", "index": "list"}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_KINDS = {"support", "resource", "resources", "endpoint", "endpoints"}
_FIELD_WORDS = {"field", "fields"}
_OPERATION_WORDS = {"operation", "operations", "endpoint", "endpoints"}
_TARGET_WORDS = {"schema", "schemas", "resource", "resources", "model", "object", "objects", "collection"}
_NOT_IN_NAME = {"to", "on", "for", "with", "and", "into", "in", "from", "field", "fields", "operation", "operations"}
_SERVICE_WORDS = {"service", "api", "app", "application", "backend", "server"}

_WORD = re.compile(r"[a-z0-9][a-z0-9\-]*", re.IGNORECASE)
_WITH = re.compile(r" with (?:fields? )?", re.IGNORECASE)
_TO = re.compile(r" (?:to|on|for) ", re.IGNORECASE)
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(?P<type>[A-Za-z0-9\-]+))?\s*(?P<optional>\?)?$")
_PATH = re.compile(r"^/[A-Za-z0-9_\-./]*$")


@dataclass(frozen=True)
class ParsedRequest:
    """A request the grammar accepted (its words only; names are resolved against a document later).

    Attributes:
        text: the request as given.
        kind: ``resource`` (a new resource), ``field`` (new properties on a schema) or ``operation``.
        words: the lower-case words of the new resource's name (``["discount", "code"]``); ``[]`` otherwise.
        resource: the new schema's name, PascalCase singular (``DiscountCode``); ``""`` for the other kinds.
        slug: kebab-case, for branch names: ``discount-code``, ``orders-tags-field``, ``orders-delete``.
        collection_path: ``/discount-codes`` (kind ``resource`` only).
        item_path: ``/discount-codes/{id}`` (kind ``resource`` only).
        fields: field name → request type (``{"code": "string"}``), in request order.
        required: the names of the required fields (always ``[]`` for kind ``field``).
        target: the TARGET as written, lower-case words joined by spaces or a path (``orders``, ``/pet``).
        verb: the VERB of kind ``operation`` (``delete``); ``""`` otherwise.
    """

    text: str
    kind: str
    words: list[str]
    resource: str
    slug: str
    collection_path: str
    item_path: str
    fields: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    target: str = ""
    verb: str = ""

    def to_dict(self) -> dict[str, object]:
        """Return the parsed request as JSON-serialisable data."""
        return {
            "text": self.text,
            "kind": self.kind,
            "resource": self.resource,
            "slug": self.slug,
            "collection_path": self.collection_path,
            "item_path": self.item_path,
            "fields": dict(self.fields),
            "required": list(self.required),
            "target": self.target,
            "verb": self.verb,
        }


def pluralize(word: str) -> str:
    """Return the English plural of a lower-case noun by the regular rules (box → boxes, city → cities)."""
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


def singularize(word: str) -> str:
    """Return the singular of a lower-case English noun by the regular rules (cities → city, boxes → box)."""
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if re.search(r"(ss|x|z|ch|sh)es$", word):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not re.search(r"(ss|us|is)$", word):
        return word[:-1]
    return word


def field_request(fields: dict[str, str], target: str) -> str:
    """The canonical add-field request for ``fields`` (name → type) on ``target`` (for "did you mean")."""
    written = [n if t == "string" else f"{n}:{t}" for n, t in fields.items()]
    if len(written) == 1:
        return f"Add a {written[0]} field to {target}"
    return f"Add {', '.join(written)} fields to {target}"


def operation_request(verb: str, target: str) -> str:
    """The canonical add-operation request (``Add an update operation to orders``, for "did you mean")."""
    return f"Add {'an' if verb[:1] in 'aeiou' else 'a'} {verb} operation to {target}"


def _shown(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def refusal(text: str, why: str, closest: str | None = None, *, rule: str | None = None) -> InputError:
    """Return the one-line refusal of request ``text``: why, the closest reading that parses, and the grammar.

    Args:
        text: the request.
        why: what is wrong, in the user's terms.
        closest: a request in the grammar that is the nearest reading of ``text`` (shown as "did you mean").
        rule: the design rule that refuses it (kept as the error's ``rule`` for the recorded decision).
    """
    meant = f"; did you mean {_shown(closest)!r}?" if closest else ""
    context = {"rule": rule} if rule else {}
    return InputError(
        f"request {_shown(text)!r} not understood: {why}{meant}",
        hint=f"write it as: {GRAMMAR}",
        request=_shown(text),
        closest=closest,
        **context,
    )


def _words(text: str) -> list[str]:
    return " ".join(text.split()).removesuffix(".").rstrip().split(" ")


def _strip(words: list[str], leading: Collection[str], trailing: Collection[str] = ()) -> list[str]:
    """``words`` without one leading word of ``leading`` and one trailing word of ``trailing`` (any case)."""
    out = list(words)
    if out and out[0].lower() in leading:
        out = out[1:]
    if out and out[-1].lower() in trailing:
        out = out[:-1]
    return out


def _type_of(text: str, name: str, raw: str) -> str:
    """The request type ``raw`` of field ``name`` names (aliases allowed), or a refusal with the closest type."""
    type_ = _TYPE_ALIASES.get(raw.lower(), raw.lower())
    if type_ in FIELD_TYPES:
        return type_
    guess = _TYPE_HINTS.get(type_) or next(iter(difflib.get_close_matches(type_, list(FIELD_TYPES), 1, 0.6)), None)
    wrong = re.compile(rf":\s*{re.escape(raw)}(?![A-Za-z0-9\-])")
    closest = wrong.sub(f":{guess}", text, count=1) if guess else None
    raise refusal(text, f"field {name!r} has unknown type {raw!r}", closest)


def _parse_fields(text: str, raw: str, *, typed: bool) -> tuple[dict[str, str], list[str]]:
    """``NAME:TYPE[?], ...`` (``typed``) or ``NAME[:TYPE][?], ...`` → (field → type, required names)."""
    fields: dict[str, str] = {}
    required: list[str] = []
    for part in (p.strip() for p in re.split(r",|\band\b", raw, flags=re.IGNORECASE)):
        if not part:
            continue
        match = _FIELD.match(part)
        if match is None or (typed and match["type"] is None):
            raise refusal(text, f"field {part!r} is not NAME:TYPE", _typed(text, raw, part) if match else None)
        name = match["name"]
        type_ = _type_of(text, name, match["type"]) if match["type"] else "string"
        if name.lower() == "id":
            raise refusal(text, "field 'id' is reserved (the server assigns it)")
        if name in fields:
            raise refusal(text, f"field {name!r} appears twice")
        fields[name] = type_
        if typed and not match["optional"]:
            required.append(name)
    if not fields:
        raise refusal(text, "'with fields' names no field")
    return fields, required


def _typed(text: str, raw: str, part: str) -> str | None:
    """``text`` with the untyped field ``part`` of its fields ``raw`` made ``part:string`` (a closest reading)."""
    normalized = " ".join(text.split()).removesuffix(".").rstrip()
    if not normalized.endswith(raw):
        return None
    one = re.compile(rf"(?<![A-Za-z0-9_:]){re.escape(part)}(?![A-Za-z0-9_:])")
    return normalized[: len(normalized) - len(raw)] + one.sub(f"{part}:string", raw, count=1)


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:80].strip("-") or "change"


def _resource(text: str, head: list[str], raw_fields: str) -> ParsedRequest:
    """``add [ARTICLE] NAME [KIND] with [fields] FIELDS``."""
    name = _strip(head, _ARTICLES, _KINDS)
    stray = next((i for i, w in enumerate(name) if w.lower() in _NOT_IN_NAME), None)
    if stray is not None:
        kept = _strip(name[:stray], (), _KINDS)
        closest = f"Add {' '.join(kept)} support with fields {raw_fields}" if kept else None
        why = f"{' '.join(name[stray:])!r} is not part of a resource name (the request applies to the --spec document)"
        raise refusal(text, why, closest)
    if not name or not all(_WORD.fullmatch(w) for w in name):
        raise refusal(text, "no resource name (letters, digits and hyphens)")
    fields, required = _parse_fields(text, raw_fields, typed=True)
    words = [w for w in re.split(r"-+", "-".join(name).lower()) if w]
    words[-1] = singularize(words[-1])
    collection = "/" + "-".join([*words[:-1], pluralize(words[-1])])
    return ParsedRequest(
        text=text,
        kind="resource",
        words=words,
        resource="".join(w[:1].upper() + w[1:] for w in words),
        slug="-".join(words),
        collection_path=collection,
        item_path=f"{collection}/{{id}}",
        fields=fields,
        required=required,
    )


def _target(text: str, words: list[str]) -> str:
    """TARGET: an existing schema's or collection's name (``orders``, ``cart items``) or a path (``/pet``)."""
    target = _strip(words, _ARTICLES, _TARGET_WORDS)
    if len(target) == 1 and _PATH.match(target[0]):
        return target[0]
    if not target or not all(_WORD.fullmatch(w) for w in target):
        raise refusal(text, f"{' '.join(words)!r} is not the name of a schema or a path such as /orders")
    return " ".join(w.lower() for w in target)


def _changed(text: str, head: list[str], target_words: list[str]) -> ParsedRequest:
    """``add ... field(s) to TARGET`` or ``add VERB [operation] to TARGET``."""
    head = _strip(head, _ARTICLES)
    lowered = [w.lower() for w in head]
    if lowered and (lowered[0] in _FIELD_WORDS) != (lowered[-1] in _FIELD_WORDS):
        names = head[1:] if lowered[0] in _FIELD_WORDS else head[:-1]
        target = _target(text, target_words)
        fields, _ = _parse_fields(text, " ".join(names), typed=False)
        return ParsedRequest(text, "field", [], "", _slug(target, *fields, "field"), "", "", fields, [], target)
    verb = lowered[0] if lowered else ""
    if len(head) in (1, 2) and verb in VERBS and (len(head) == 1 or lowered[1] in _OPERATION_WORDS):
        target = _target(text, target_words)
        return ParsedRequest(text, "operation", [], "", _slug(target, verb), "", "", target=target, verb=verb)
    raise refusal(text, *_neither(head, target_words))


def _neither(head: list[str], target_words: list[str]) -> tuple[str, str | None]:
    """Why ``add HEAD to TARGET`` is none of the forms, and its closest reading."""
    target = " ".join(target_words)
    lowered = [w.lower() for w in head]
    if lowered and lowered[0] in _VERB_HINTS:
        return (
            f"{head[0]!r} is not an operation of the grammar",
            operation_request(_VERB_HINTS[lowered[0]], target),
        )
    why = (
        f"{' '.join(head)!r} is neither fields ('add NAME field to SCHEMA') nor an operation ({', '.join(VERBS)}), and "
        "a new resource names its fields"
    )
    if {w.lower() for w in target_words} & _SERVICE_WORDS:
        why += " (the request applies to the --spec document: no 'to ... service' needed)"
        name = _strip(head, set(), _KINDS)
        return why, f"Add {' '.join(name) or 'NAME'} support with fields NAME:TYPE, ..."
    if len(head) == 1 and _FIELD.match(head[0]):
        return why, f"Add a {head[0]} field to {target}"
    name = _strip(head, set(), _KINDS)
    return why, f"Add {' '.join(name) or 'NAME'} support with fields NAME:TYPE, ..."


def _without_connector(text: str, words: list[str]) -> ParsedRequest:
    """``add X`` with neither ``with`` nor ``to``: always refused, with the reading it is closest to."""
    head = _strip(words, _ARTICLES)
    lowered = [w.lower() for w in head]
    if lowered and lowered[-1] in _FIELD_WORDS:
        raise refusal(text, "a new field needs the schema it goes to", f"Add {' '.join(words)} to SCHEMA")
    if lowered and lowered[0] in VERBS:
        raise refusal(text, "a new operation needs the resource it goes to", operation_request(lowered[0], "RESOURCE"))
    name = _strip(head, set(), _KINDS)
    if not name or not all(_WORD.fullmatch(w) and w.lower() not in _NOT_IN_NAME for w in name):
        raise refusal(text, "no resource name")
    why = "a new resource names its fields (Pilotage invents none)"
    raise refusal(text, why, f"Add {' '.join(name)} support with fields NAME:TYPE, ...")


def parse_request(text: str) -> ParsedRequest:
    """Parse a change request with the grammar of this module (linear in the length of ``text``).

    Args:
        text: e.g. ``"Add discount code support with fields code:string, percent:integer"`` or
            ``"Add a tags field to orders"``.

    Returns:
        The parsed request (its names are not resolved yet: :func:`pilotage.spec.evolve.plan_change`).

    Raises:
        InputError: the text does not follow the grammar; one line with why, the closest reading that parses
            (when there is one) and the grammar.
    """
    words = _words(text or "")
    if not words[0] or words[0].lower() != "add":
        rest = " ".join(words[1:])
        closest = f"Add {rest}" if rest and _parses(f"add {rest}") else None
        raise refusal(text, "it must start with 'add'", closest)
    rest = " ".join(words[1:])
    cut = _WITH.search(" " + rest)
    if cut is not None:
        raw_fields = (" " + rest)[cut.end() :].strip()
        if not raw_fields:
            raise refusal(text, "'with fields' names no field")
        head = (" " + rest)[: cut.start()].split()
        return _resource(text, head, raw_fields)
    to = _TO.search(" " + rest + " ")
    if to is not None:
        padded = " " + rest + " "
        return _changed(text, padded[: to.start()].split(), padded[to.end() :].split())
    return _without_connector(text, words[1:])


def _parses(text: str) -> bool:
    try:
        parse_request(text)
    except InputError:
        return False
    return True
