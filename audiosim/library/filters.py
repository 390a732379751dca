"""Filter expressions over asset fields: text → small AST → SQLAlchemy boolean expression.

A user types ``duration < 500ms and (name ~ "kick*" or not loudness > -18 LUFS)``. :func:`parse_filter`
parses it with lark (LALR, grammar below) into frozen dataclasses, checking fields, units and types as it
goes; :func:`compile_filter` turns that into a boolean expression over :class:`~audiosim.library.models.Asset`
in which every literal is a bound parameter (no SQL is ever built from user text).

Semantics worth knowing:

* A comparison against a missing value (``NULL``, e.g. the duration of a failed asset) is false, and
  ``not`` is the complement: ``P`` and ``not P`` always split the assets in two. ``!=`` and ``!~`` are
  comparisons, so ``format != wav`` does not match an asset without a format, but ``not format = wav`` does.
* ``~`` on text is a case-insensitive substring match, or a whole-value glob if the pattern contains ``*``
  or ``?``. ``[`` is an ordinary character (file names such as ``Kick [wet].wav`` are common; SQL ``LIKE``
  has no character classes). Case-folding is the database's: ASCII-only on SQLite.
* Sizes use binary multiples: ``1 KB`` = 1024 bytes (``KiB`` etc. are accepted as synonyms).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken
from sqlalchemy import BigInteger, ColumnElement, Float, String, and_, func, literal, or_
from sqlalchemy.orm import InstrumentedAttribute

from audiosim.errors import FilterSyntaxError
from audiosim.library.models import Asset

MAX_DEPTH = 40
"""Deepest nesting accepted, counting each parenthesis, ``not``, ``and`` and ``or`` level (SQLite before
3.46 has a fixed parser stack that overflows at about 40 levels of SQL parentheses)."""
MAX_TEXT = 4096
"""Longest text value, in characters (SQLite refuses LIKE patterns over 50 000 bytes)."""
MAX_COMPARISONS = 200
"""Most comparisons in one filter (SQLite refuses expression trees deeper than 1000)."""
MAX_LENGTH = 100_000
"""Longest filter accepted, in characters."""

_INT64 = 2**63 - 1
_KEYWORDS = frozenset({"and", "or", "not"})


# --- fields -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldSpec:
    """A field a filter may name: the column it reads, its kind and the units its values may carry."""

    name: str
    column: InstrumentedAttribute[Any]
    kind: str  # "number" or "string"
    units: dict[str, float] = field(default_factory=dict)  # unit (any case) -> factor to the column's unit
    fold_case: bool = False  # `=` ignores case (format, subtype, status)
    aliases: tuple[str, ...] = ()
    doc: str = ""

    @property
    def nullable(self) -> bool:
        return bool(self.column.property.columns[0].nullable)


_DB = {"dB": 1.0, "dBFS": 1.0, "LUFS": 1.0, "LU": 1.0}
_SECONDS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}
_HERTZ = {"Hz": 1, "kHz": 1000}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4,
          "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}

_SPECS = (
    FieldSpec("duration", Asset.duration, "number", _SECONDS, doc="length, seconds"),
    FieldSpec("avg_loudness", Asset.avg_loudness, "number", _DB, aliases=("loudness",),
              doc="integrated loudness, LUFS"),
    FieldSpec("peak_db", Asset.peak_db, "number", _DB, aliases=("peak",), doc="sample peak, dBFS"),
    FieldSpec("centroid", Asset.centroid, "number", _HERTZ, doc="mean spectral centroid, Hz"),
    FieldSpec("sample_rate", Asset.sample_rate, "number", _HERTZ, aliases=("sr", "samplerate"),
              doc="file sample rate, Hz"),
    FieldSpec("channels", Asset.channels, "number", doc="number of channels"),
    FieldSpec("size", Asset.size, "number", _BYTES, doc="file size, bytes (1 KB = 1024 B)"),
    FieldSpec("mtime", Asset.mtime, "number", doc="modification time, Unix seconds"),
    FieldSpec("n_segments", Asset.n_segments, "number", aliases=("segments",), doc="indexed segments"),
    FieldSpec("id", Asset.id, "number", doc="asset id"),
    FieldSpec("path", Asset.path, "string", doc="absolute path"),
    FieldSpec("name", Asset.name, "string", doc="file name"),
    FieldSpec("folder", Asset.folder, "string", doc="containing folder"),
    FieldSpec("format", Asset.format, "string", fold_case=True, doc="container, e.g. WAV, FLAC"),
    FieldSpec("subtype", Asset.subtype, "string", fold_case=True, doc="encoding, e.g. PCM_24"),
    FieldSpec("status", Asset.status, "string", fold_case=True, doc="indexed or failed"),
    FieldSpec("error", Asset.error, "string", doc="why indexing failed"),
)

FIELDS: dict[str, FieldSpec] = {key: spec for spec in _SPECS for key in (spec.name, *spec.aliases)}
"""User-visible field names (canonical names and aliases, lower case) → their :class:`FieldSpec`."""


def describe_fields() -> str:
    """Describe the filter language's fields, units and operators, for CLI help.

    Returns
    -------
    str
        Several lines of plain text.
    """
    lines = ["Fields (case-insensitive):"]
    for spec in _SPECS:
        names = ", ".join((spec.name, *spec.aliases))
        units = f"  [units: {', '.join(spec.units)}]" if spec.units else ""
        lines.append(f"  {names:<28} {spec.kind:<7} {spec.doc}{units}")
    lines += [
        "Operators: < <= > >= = == != on numbers; = == != ~ !~ on text (~ is a case-insensitive",
        "  substring match, or a glob when the pattern has * or ?). Combine with and/&&, or/||, not/!,",
        "  parentheses. Quote text with spaces: name ~ \"kick drum\".",
        "Example: duration < 500ms and (name ~ \"*.wav\" or loudness > -18 LUFS)",
    ]
    return "\n".join(lines)


# --- AST ----------------------------------------------------------------------------------------------

Value = int | float | str


@dataclass(frozen=True)
class Compare:
    """``field op value``: ``field`` is a canonical field name, ``value`` is in the column's unit."""

    field: str
    op: str  # one of < <= > >= = != ~ !~
    value: Value

    def __str__(self) -> str:
        if isinstance(self.value, str):
            text = '"' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(self.value)
        return f"{self.field} {self.op} {text}"


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_wrap(child) for child in self.children)


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(_wrap(child) for child in self.children)


@dataclass(frozen=True)
class Not:
    child: Node

    def __str__(self) -> str:
        return f"not {_wrap(self.child)}"


Node = Compare | And | Or | Not


def _wrap(node: Node) -> str:
    return f"({node})" if isinstance(node, (And, Or)) else str(node)


# --- parsing ------------------------------------------------------------------------------------------

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_or and_expr)*
?and_expr: not_expr (_and not_expr)*
?not_expr: _not not_expr -> negation
         | atom
?atom: comparison
     | LPAR or_expr _RPAR -> group
comparison: NAME OP (STRING | WORD UNIT?)
_or: OR | BARBAR
_and: AND | AMPAMP
_not: NOT | BANG
OR: "or"i
AND: "and"i
NOT: "not"i
BARBAR: "||"
AMPAMP: "&&"
BANG: "!"
LPAR: "("
_RPAR: ")"
OP: /<=|>=|==|!=|!~|<|>|=|~/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /"(?:[^"\\]|\\[\s\S])*"|'(?:[^'\\]|\\[\s\S])*'/
WORD: /[^\s()"'<>=!~&|]+/
UNIT: /[A-Za-z]+/
%ignore /\s+/
"""

_STRING = re.compile(r""""(?:[^"\\]|\\[\s\S])*"|'(?:[^'\\]|\\[\s\S])*'""")
_NUMBER = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)")
_ESCAPES = {"n": "\n", "t": "\t"}
_EXPECTED = {  # lark terminal -> what a user would call it, in the order messages list them
    "NAME": "a field name", "LPAR": "'('", "NOT": "'not'", "BANG": "'not'", "OP": "an operator",
    "STRING": "a value", "WORD": "a value", "UNIT": "a unit", "AND": "'and'", "AMPAMP": "'and'",
    "OR": "'or'", "BARBAR": "'or'", "_RPAR": "')'", "$END": "end of filter",
}


class _Builder:
    """Lark callbacks, run as the LALR parser reduces: no recursion, so depth is checked, not risked."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.depth: dict[int, int] = {}  # id(node) -> nesting depth of that subtree
        self.comparisons = 0

    def _error(self, message: str, position: int) -> FilterSyntaxError:
        return FilterSyntaxError(message, expression=self.expression, position=position)

    def _node(self, node: Node, depth: int, position: int) -> Node:
        if depth > MAX_DEPTH:
            raise self._error(f"expression nested too deeply (more than {MAX_DEPTH} levels)", position)
        self.depth[id(node)] = depth
        return node

    def _combine(self, cls: type[And | Or], items: list[Any]) -> Node:
        children = tuple(item for item in items if not isinstance(item, Token))
        keyword = next(item for item in items if isinstance(item, Token))
        depth = 1 + max(self.depth.get(id(child), 1) for child in children)
        return self._node(cls(children), depth, keyword.start_pos)

    def or_expr(self, items: list[Any]) -> Node:
        return self._combine(Or, items)

    def and_expr(self, items: list[Any]) -> Node:
        return self._combine(And, items)

    def negation(self, items: list[Any]) -> Node:
        keyword, child = items
        return self._node(Not(child), 1 + self.depth.get(id(child), 1), keyword.start_pos)

    def group(self, items: list[Any]) -> Node:
        paren, child = items
        return self._node(child, 1 + self.depth.get(id(child), 1), paren.start_pos)

    def comparison(self, items: list[Any]) -> Node:
        name, op, value, *unit = items
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self._error(f"filter too long (more than {MAX_COMPARISONS} comparisons)", name.start_pos)
        spec = FIELDS.get(name.lower())
        if spec is None:
            close = difflib.get_close_matches(name.lower(), FIELDS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known fields: " + ", ".join(FIELDS)
            raise self._error(f"unknown field '{name}': {hint}", name.start_pos)
        operator = "=" if op == "==" else str(op)
        if value.type == "WORD" and value.lower() in _KEYWORDS:
            raise self._error(f"unexpected '{value}' at column {value.start_pos + 1}: expected a value",
                              value.start_pos)
        if spec.kind == "string":
            if operator not in ("=", "!=", "~", "!~"):
                raise self._error(f"'{op}' compares numbers but {spec.name} is text: use =, !=, ~ or !~",
                                  op.start_pos)
            if unit:
                raise self._error(f"unexpected '{unit[0]}' at column {unit[0].start_pos + 1}: "
                                  "put text with spaces in quotes", unit[0].start_pos)
            text = _unquote(value) if value.type == "STRING" else str(value)
            if "\x00" in text:  # SQLite's LIKE would stop at it and match too much
                raise self._error("text values cannot contain NUL characters", value.start_pos)
            if len(text) > MAX_TEXT:
                raise self._error(f"text value too long (more than {MAX_TEXT} characters)", value.start_pos)
            return self._node(Compare(spec.name, operator, text), 1, name.start_pos)
        if operator in ("~", "!~"):
            raise self._error(f"'{op}' matches text but {spec.name} is a number: use <, <=, >, >=, = or !=",
                              op.start_pos)
        if value.type == "STRING":
            raise self._error(f"{spec.name} is a number, not text", value.start_pos)
        return self._node(Compare(spec.name, operator, self._number(spec, value, unit)), 1, name.start_pos)

    def _number(self, spec: FieldSpec, token: Token, unit: list[Token]) -> int | float:
        match = _NUMBER.fullmatch(token)
        if match is None:
            raise self._error(f"expected a number for {spec.name}, got '{token}'", token.start_pos)
        digits, suffix = match.groups()
        if suffix and unit:
            raise self._error(f"unexpected '{unit[0]}' after a unit", unit[0].start_pos)
        unit_text, unit_pos = (suffix, token.start_pos + len(digits)) if suffix else (
            (str(unit[0]), unit[0].start_pos) if unit else ("", 0))
        factors = {unit.lower(): factor for unit, factor in spec.units.items()}
        if unit_text and unit_text.lower() not in factors:
            allowed = f"use {', '.join(spec.units)}" if spec.units else "it takes no unit"
            raise self._error(f"unit '{unit_text}' does not fit {spec.name}: {allowed}", unit_pos)
        factor = factors.get(unit_text.lower(), 1)
        # Integers beyond 64 bits (which no database column holds) become floats, still comparable.
        unsigned = digits.lstrip("+-")
        is_int = unsigned.isdigit() and len(unsigned) <= 19
        number: int | float = (int(digits) if is_int else float(digits)) * factor
        if isinstance(number, int) and abs(number) > _INT64:
            number = float(number)
        if not math.isfinite(number):
            raise self._error(f"number out of range: '{token}'", token.start_pos)
        return number


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\([\s\S])", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


@cache
def _lark() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual")


def parse_filter(expression: str) -> Node:
    """Parse a filter expression into an AST, checking fields, units and types.

    Parameters
    ----------
    expression : str
        What the user typed, e.g. ``'duration < 2s and name ~ "*.wav"'``.

    Returns
    -------
    Node
        A :class:`Compare`, :class:`And`, :class:`Or` or :class:`Not`; numbers are converted to the
        column's unit (``500ms`` → ``0.5``), ``==`` becomes ``=`` and fields get their canonical names.

    Raises
    ------
    FilterSyntaxError
        With ``position`` the 0-based offset of the offending token (``len(expression)`` at the end).
    """
    if not expression.strip():
        raise FilterSyntaxError("empty filter", expression=expression, position=len(expression))
    if len(expression) > MAX_LENGTH:
        raise FilterSyntaxError(f"filter too long (more than {MAX_LENGTH} characters)",
                                expression=expression[:80], position=None)
    for position, char in enumerate(expression):
        if "\ud800" <= char <= "\udfff":
            raise FilterSyntaxError("invalid character (lone surrogate)", expression=expression,
                                    position=position)
    try:
        return _build(_lark().parse(expression), _Builder(expression))
    except UnexpectedToken as exc:
        raise _unexpected_token(expression, exc) from None
    except UnexpectedCharacters as exc:
        raise _unexpected_char(expression, exc) from None
    except LarkError as exc:  # any other lark failure, reported without lark's multi-line text
        raise FilterSyntaxError(f"invalid filter ({type(exc).__name__})", expression=expression) from None
    except RecursionError:
        raise FilterSyntaxError("expression nested too deeply", expression=expression) from None


def _build(tree: Tree, builder: _Builder) -> Node:
    """Turn lark's tree into our AST bottom-up with an explicit stack (deep input must not recurse)."""
    done: list[Any] = []  # finished values, in order
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        item, expanded = stack.pop()
        if not isinstance(item, Tree):
            done.append(item)
        elif expanded:
            count = len(item.children)
            values = done[len(done) - count:]
            del done[len(done) - count:]
            done.append(getattr(builder, str(item.data))(values))
        else:
            stack.append((item, True))
            stack.extend((child, False) for child in reversed(item.children))
    return done[0]


def _describe_token(token: Token) -> str:
    text = str(token)
    return repr(text if len(text) <= 20 else text[:20] + "…")


def _expected(names: set[str]) -> str:
    words = list(dict.fromkeys(_EXPECTED[n] for n in _EXPECTED if n in names))
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _unexpected_token(expression: str, exc: UnexpectedToken) -> FilterSyntaxError:
    token = exc.token
    expected = _expected(set(exc.accepts or exc.expected))  # accepts: exact, from the parser state
    if token.type == "$END":
        return FilterSyntaxError(f"unexpected end of filter: expected {expected}", expression=expression,
                                 position=len(expression))
    position = token.start_pos
    return FilterSyntaxError(f"unexpected {_describe_token(token)} at column {position + 1}: expected {expected}",
                             expression=expression, position=position)


def _unexpected_char(expression: str, exc: UnexpectedCharacters) -> FilterSyntaxError:
    position = exc.pos_in_stream
    char = expression[position]
    if char in "\"'" and not _STRING.match(expression, position):
        message = f"unterminated string starting at column {position + 1}"
    else:
        message = f"unexpected {char!r} at column {position + 1}: expected {_expected(set(exc.allowed))}"
    return FilterSyntaxError(message, expression=expression, position=position)


# --- compiling ----------------------------------------------------------------------------------------

def compile_filter(expression: str | Node) -> ColumnElement[bool]:
    """Compile a filter expression into a SQLAlchemy condition over :class:`Asset` columns.

    Parameters
    ----------
    expression : str or Node
        Filter text, or an AST from :func:`parse_filter`.

    Returns
    -------
    ColumnElement[bool]
        Use as ``select(Asset).where(compile_filter(text))``. Every literal is a bound parameter; the
        condition is never NULL (a comparison against a missing value is false).

    Raises
    ------
    FilterSyntaxError
        If the text does not parse (see :func:`parse_filter`).
    """
    node = parse_filter(expression) if isinstance(expression, str) else expression
    return _compile(node)


def _compile(node: Node, negated: bool = False) -> ColumnElement[bool]:
    """Compile with ``not`` pushed down to the comparisons (De Morgan): SQLite's parser overflows on
    deeply nested ``NOT (…)``, and the SQL reads better."""
    if isinstance(node, Not):
        return _compile(node.child, not negated)
    if isinstance(node, (And, Or)):
        combine = and_ if isinstance(node, And) != negated else or_
        return combine(*(_compile(child, negated) for child in node.children))
    spec = FIELDS[node.field]
    op = _INVERSE[node.op] if negated else node.op
    condition = _number_condition(spec, op, node.value) if spec.kind == "number" else (
        _text_condition(spec, op, str(node.value)))
    if not spec.nullable:
        return condition
    # Two-valued logic: a comparison with a missing value is false, and its negation true, so that
    # `not P` matches exactly the assets P does not.
    return or_(spec.column.is_(None), condition) if negated else and_(spec.column.is_not(None), condition)


_INVERSE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "=": "!=", "!=": "=", "~": "!~", "!~": "~"}
_COMPARE = {
    "<": lambda c, v: c < v, "<=": lambda c, v: c <= v, ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v, "=": lambda c, v: c == v, "!=": lambda c, v: c != v,
}


def _number_condition(spec: FieldSpec, op: str, value: Value) -> ColumnElement[bool]:
    return _COMPARE[op](spec.column, literal(value, Float() if isinstance(value, float) else BigInteger()))


def _text_condition(spec: FieldSpec, op: str, text: str) -> ColumnElement[bool]:
    if op in ("=", "!="):
        if spec.fold_case:
            return _COMPARE[op](func.lower(spec.column), func.lower(literal(text, String())))
        return _COMPARE[op](spec.column, literal(text, String()))
    pattern = literal(_like_pattern(text), String())
    if op == "!~":
        return spec.column.not_ilike(pattern, escape="\\")
    return spec.column.ilike(pattern, escape="\\")


def _like_pattern(text: str) -> str:
    """A glob (``*``, ``?``) becomes a whole-value LIKE pattern; other text a substring one."""
    escaped = re.sub(r"([\\%_])", r"\\\1", text)
    if "*" not in text and "?" not in text:
        return f"%{escaped}%"
    return re.sub(r"\*+", "%", escaped).replace("?", "_")
