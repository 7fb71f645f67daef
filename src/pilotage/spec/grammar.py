"""The change-request grammar of the design agent: deterministic, no LLM.

A request asks for a new resource with CRUD endpoints::

    request  := "add" NAME ["support" | "resource" | "endpoints"] ["with" ["fields"] FIELDS] ["."]
    NAME     := WORD+                      letters, digits, spaces, hyphens: "discount code"
    FIELDS   := FIELD ("," FIELD)* [("," | "and") FIELD]
    FIELD    := IDENT ":" TYPE ["?"]       "?" marks an optional field; every other field is required
    IDENT    := [A-Za-z_][A-Za-z0-9_]*     not "id" (the server assigns it)
    TYPE     := string | integer | number | boolean | date | date-time

Matching ignores case and a trailing period. Without fields the resource gets ``name:string``.

Example: ``Add discount code support with fields code:string, percent:integer`` gives the resource
``DiscountCode`` at ``/discount-codes`` and ``/discount-codes/{id}`` with fields ``code`` (string) and
``percent`` (integer), both required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pilotage.errors import InputError

__all__ = ["FIELD_TYPES", "GRAMMAR", "ParsedRequest", "parse_request", "pluralize", "singularize"]

GRAMMAR = (
    "add NAME [support|resource|endpoints] [with [fields] NAME:TYPE[?], ...] - TYPE is one of "
    "string, integer, number, boolean, date, date-time; e.g. "
    '"Add discount code support with fields code:string, percent:integer"'
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
_TYPE_ALIASES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "datetime": "date-time"}

# The request is split step by step on single spaces (whitespace runs collapsed first) rather than by one regular
# expression with lazy and optional parts: that expression backtracked cubically on a long run of spaces (a 5 KB
# request held the design agent for minutes; issue #15).
_NAME = re.compile(r"[a-z][a-z0-9 \-]*", re.IGNORECASE)
_KIND = re.compile(r" (?:support|resource|resources|endpoints?)$", re.IGNORECASE)
_WITH = re.compile(r" with (?:fields? )?", re.IGNORECASE)
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<type>[A-Za-z\-]+)\s*(?P<optional>\?)?$")


@dataclass(frozen=True)
class ParsedRequest:
    """A request the grammar accepted.

    Attributes:
        text: the request as given.
        words: the lower-case words of the resource name (``["discount", "code"]``).
        resource: the schema name, PascalCase singular (``DiscountCode``).
        slug: kebab-case singular (``discount-code``), used in branch names.
        collection_path: ``/discount-codes``.
        item_path: ``/discount-codes/{id}``.
        fields: field name → request type (``{"code": "string"}``), in request order.
        required: the names of the required fields.
    """

    text: str
    words: list[str]
    resource: str
    slug: str
    collection_path: str
    item_path: str
    fields: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Return the parsed request as JSON-serialisable data."""
        return {
            "text": self.text,
            "resource": self.resource,
            "slug": self.slug,
            "collection_path": self.collection_path,
            "item_path": self.item_path,
            "fields": dict(self.fields),
            "required": list(self.required),
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


def _reject(text: str, why: str) -> InputError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    return InputError(f"request {shown!r} not understood: {why}", hint=f"write it as: {GRAMMAR}", request=shown)


def _split_request(text: str) -> tuple[str, str | None] | None:
    """Return ``(NAME, FIELDS or None)`` of a request, or None when it does not have the grammar's shape.

    Linear in the length of ``text``: whitespace runs become one space, then the text is cut at the first
    `` with `` (the name is the shortest prefix, as the grammar's lazy reading had it).
    """
    words = " ".join(text.split()).removesuffix(".").rstrip()
    if words[:4].lower() != "add ":
        return None
    rest = words[4:]
    cut = _WITH.search(rest)
    head, fields = (rest[: cut.start()], rest[cut.end() :].strip() or None) if cut else (rest, None)
    if cut is not None and fields is None:
        return None
    head = _KIND.sub("", head)
    return (head, fields) if _NAME.fullmatch(head) else None


def _parse_fields(text: str, raw: str) -> tuple[dict[str, str], list[str]]:
    parts = [p.strip() for p in re.split(r",|\band\b", raw, flags=re.IGNORECASE)]
    fields: dict[str, str] = {}
    required: list[str] = []
    for part in parts:
        if not part:
            continue
        match = _FIELD.match(part)
        if match is None:
            raise _reject(text, f"field {part!r} is not NAME:TYPE")
        name = match["name"]
        type_ = match["type"].lower()
        type_ = _TYPE_ALIASES.get(type_, type_)
        if type_ not in FIELD_TYPES:
            raise _reject(text, f"field {name!r} has unknown type {match['type']!r}")
        if name.lower() == "id":
            raise _reject(text, "field 'id' is reserved (the server assigns it)")
        if name in fields:
            raise _reject(text, f"field {name!r} appears twice")
        fields[name] = type_
        if not match["optional"]:
            required.append(name)
    if not fields:
        raise _reject(text, "'with fields' names no field")
    return fields, required


def parse_request(text: str) -> ParsedRequest:
    """Parse a change request with the :data:`GRAMMAR`.

    Args:
        text: e.g. ``"Add discount code support with fields code:string, percent:integer"``.

    Returns:
        The parsed request.

    Raises:
        InputError: the text does not follow the grammar; the message shows the grammar.
    """
    split = _split_request(text or "")
    if split is None:
        raise _reject(text, "it must start with 'add' and name a resource")
    name, raw_fields = split
    words = [w for w in re.split(r"[\s\-]+", name.lower()) if w]
    if not words or words in (["support"], ["a"], ["an"], ["the"]):
        raise _reject(text, "no resource name")
    if words[0] in {"a", "an", "the"}:
        words = words[1:]
    words[-1] = singularize(words[-1])
    if raw_fields is not None:
        fields, required = _parse_fields(text, raw_fields)
    else:
        fields, required = {"name": "string"}, ["name"]
    resource = "".join(w[:1].upper() + w[1:] for w in words)
    plural = "-".join([*words[:-1], pluralize(words[-1])])
    collection = f"/{plural}"
    return ParsedRequest(
        text=text,
        words=words,
        resource=resource,
        slug="-".join(words),
        collection_path=collection,
        item_path=f"{collection}/{{id}}",
        fields=fields,
        required=required,
    )
