"""OData ``$filter``: a tokenizer, the syntax tree, a recursive-descent parser, binding
against a schema, evaluation against a row, and ``$orderby`` ordering.

Kept apart from the routes because rows (``$filter`` on entity sets, key segments) and
metadata (``$filter`` on ``EntityDefinitions``) both parse with it, with different
schemas and case rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from requests_ppauth.testing.dataverse._errors import ODataError, _no_property

_GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$"
)
_PUNCT = "(),[]="
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?[mMdDfFlL]?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class _Token:
    kind: str  # "punct", "string", "dstring", "word"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in _PUNCT:
            tokens.append(_Token("punct", c, i))
            i += 1
        elif c in "'\"":
            start, i, chars = i, i + 1, []
            while True:
                if i >= n:
                    raise ODataError(
                        400,
                        "0x80060888",
                        f"There is an unterminated string literal at position {start} in '{text}'.",
                    )
                if text[i] == c:
                    if i + 1 < n and text[i + 1] == c:  # a doubled quote is one quote
                        chars.append(c)
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(text[i])
                i += 1
            tokens.append(_Token("string" if c == "'" else "dstring", "".join(chars), start))
        else:
            start = i
            while (
                i < n and not text[i].isspace() and text[i] not in _PUNCT and text[i] not in "'\""
            ):
                i += 1
            tokens.append(_Token("word", text[start:i], start))
    return tokens


@dataclass
class _Literal:
    value: Any
    edm: str  # Edm.String, Edm.Int32, Edm.Decimal, Edm.Boolean, Edm.Guid, Edm.DateTimeOffset, null


@dataclass
class _Property:
    name: str


@dataclass
class _Compare:
    op: str
    left: _Node
    right: _Node


@dataclass
class _Logical:
    op: str  # "and" / "or"
    left: _Node
    right: _Node


@dataclass
class _Not:
    operand: _Node


@dataclass
class _Function:
    name: str  # contains / startswith / endswith
    prop: _Property
    value: _Literal


@dataclass
class _In:
    prop: str
    values: list[str]
    negate: bool


_Node = _Literal | _Property | _Compare | _Logical | _Not | _Function | _In


class _Parser:
    """``$filter`` grammar: or := and ('or' and)*; and := unary ('and' unary)*;
    unary := 'not' unary | comparison; comparison := primary (op primary)?;
    primary := '(' or ')' | function '(' args ')' | literal | property."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def parse(self) -> _Node:
        if not self.tokens:
            raise self._expected(len(self.text))
        node = self._or()
        if self.i < len(self.tokens):
            raise self._syntax(self.tokens[self.i].pos)
        return node

    # -- helpers
    def _syntax(self, pos: int) -> ODataError:
        return ODataError(400, "0x80060888", f"Syntax error at position {pos} in '{self.text}'.")

    def _expected(self, pos: int) -> ODataError:
        return ODataError(
            400, "0x80060888", f"Expression expected at position {pos} in '{self.text}'."
        )

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _punct(self, text: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "punct" and tok.text == text

    def _word(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "word" and tok.text in words

    def _take(self, kind: str, text: str | None = None) -> _Token:
        tok = self._peek()
        if tok is None:
            raise self._expected(len(self.text))
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self._syntax(tok.pos)
        self.i += 1
        return tok

    # -- grammar
    def _or(self) -> _Node:
        node = self._and()
        while self._word("or"):
            self.i += 1
            node = _Logical("or", node, self._and())
        return node

    def _and(self) -> _Node:
        node = self._unary()
        while self._word("and"):
            self.i += 1
            node = _Logical("and", node, self._unary())
        return node

    def _unary(self) -> _Node:
        if self._word("not"):
            self.i += 1
            return _Not(self._unary())
        return self._comparison()

    def _comparison(self) -> _Node:
        left = self._primary()
        tok = self._peek()
        if tok is not None and tok.kind == "word" and tok.text in _COMPARISONS:
            self.i += 1
            right = self._primary()
            return _Compare(tok.text, left, right)
        return left

    def _primary(self) -> _Node:
        tok = self._peek()
        if tok is None:
            raise self._expected(len(self.text))
        if tok.kind == "punct" and tok.text == "(":
            self.i += 1
            node = self._or()
            self._take("punct", ")")
            return node
        if tok.kind == "string":
            self.i += 1
            return _Literal(tok.text, "Edm.String")
        if tok.kind != "word":
            raise self._syntax(tok.pos)
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if nxt is not None and nxt.kind == "punct" and nxt.text == "(" and _IDENT.match(tok.text):
            return self._function(tok)
        self.i += 1
        return self._atom(tok)

    def _atom(self, tok: _Token) -> _Literal | _Property:
        word = tok.text
        if word in ("true", "false"):
            return _Literal(word == "true", "Edm.Boolean")
        if word == "null":
            return _Literal(None, "null")
        if _GUID.match(word) and "-" in word:
            return _Literal(word.strip("{}").lower(), "Edm.Guid")
        if _NUMBER.match(word):
            digits = word.rstrip("mMdDfFlL")
            if re.match(r"^-?\d+$", digits):
                return _Literal(int(digits), "Edm.Int32")
            return _Literal(float(digits), "Edm.Decimal")
        if _DATETIME.match(word):
            return _Literal(word, "Edm.DateTimeOffset")
        if word in _COMPARISONS or word in ("and", "or", "not") or not _IDENT.match(word):
            raise self._syntax(tok.pos)
        return _Property(word)

    def _function(self, tok: _Token) -> _Node:
        name = tok.text
        self.i += 2  # name and "("
        if name in ("contains", "startswith", "endswith"):
            arg = self._primary()
            self._take("punct", ",")
            value = self._primary()
            self._take("punct", ")")
            if not isinstance(arg, _Property) or not isinstance(value, _Literal):
                raise self._syntax(tok.pos)
            return _Function(name, arg, value)
        if name in ("Microsoft.Dynamics.CRM.In", "Microsoft.Dynamics.CRM.NotIn"):
            args: dict[str, Any] = {}
            while True:
                key = self._take("word").text
                self._take("punct", "=")
                if self._punct("["):
                    self.i += 1
                    values: list[str] = []
                    while not self._punct("]"):
                        item = self._peek()
                        if item is None or item.kind == "punct":
                            raise self._syntax(item.pos if item else len(self.text))
                        values.append(item.text)
                        self.i += 1
                        if self._punct(","):
                            self.i += 1
                    self.i += 1
                    args[key] = values
                else:
                    args[key] = self._take("string").text
                if self._punct(","):
                    self.i += 1
                    continue
                self._take("punct", ")")
                break
            if not isinstance(args.get("PropertyName"), str) or not isinstance(
                args.get("PropertyValues"), list
            ):
                raise self._syntax(tok.pos)
            return _In(args["PropertyName"], args["PropertyValues"], name.endswith("NotIn"))
        raise ODataError(
            400,
            "0x80060888",
            f"An unknown function with name '{name}' was found. This may also be a function "
            "import or a key lookup on a navigation property, which is not allowed.",
        )


def parse_filter(text: str) -> _Node:
    """The syntax tree of an OData ``$filter`` (:class:`ODataError` on a syntax error)."""
    return _Parser(text).parse()


_EDM_FAMILY = {
    "Edm.String": "string",
    "Edm.Guid": "guid",
    "Edm.Boolean": "bool",
    "Edm.DateTimeOffset": "datetime",
    "Edm.Int32": "number",
    "Edm.Int64": "number",
    "Edm.Decimal": "number",
    "Edm.Double": "number",
}
_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


class _Schema:
    """Binds names to types: an entity's attributes, or a metadata item's properties."""

    def __init__(self, type_name: str, edm: Mapping[str, str], fold_case: bool) -> None:
        self.type_name = type_name
        self.edm = edm
        self.fold_case = fold_case

    def check(self, name: str) -> str:
        if name not in self.edm:
            raise _no_property(name, self.type_name)
        return self.edm[name]

    def bind(self, node: _Node, metadata: bool = False) -> None:
        """Check names and operand types before any row is read, as OData binds."""
        if isinstance(node, _Property):
            self.check(node.name)
        elif isinstance(node, _Logical):
            self.bind(node.left, metadata)
            self.bind(node.right, metadata)
        elif isinstance(node, _Not):
            self.bind(node.operand, metadata)
        elif isinstance(node, _Function):
            if metadata:
                raise ODataError(
                    501,
                    "0x8006088a",
                    f'The "{node.name}" function isn\'t supported for Metadata Entities.',
                )
            self.check(node.prop.name)
        elif isinstance(node, _In):
            self.check(node.prop)
        elif isinstance(node, _Compare):
            types = []
            for side in (node.left, node.right):
                self.bind(side, metadata)
                if isinstance(side, _Property):
                    types.append(self.edm[side.name])
                elif isinstance(side, _Literal):
                    types.append(side.edm)
                else:
                    types.append("Edm.Boolean")
            left, right = types
            families = {_EDM_FAMILY.get(t, t) for t in types if t != "null"}
            if len(families) > 1 and families != {"string", "guid"}:
                raise ODataError(
                    400,
                    "0x0",
                    "A binary operator with incompatible types was detected. Found operand "
                    f"types '{left}' and '{right}' for operator kind '{_OP_KIND[node.op]}'.",
                )


def _comparable(value: Any, fold: bool) -> Any:
    if isinstance(value, str) and fold:
        return value.casefold()
    return value


def _evaluate(node: _Node, row: Mapping[str, Any], fold: bool) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Property):
        return row.get(node.name)
    if isinstance(node, _Logical):
        left = bool(_evaluate(node.left, row, fold))
        if node.op == "and":
            return left and bool(_evaluate(node.right, row, fold))
        return left or bool(_evaluate(node.right, row, fold))
    if isinstance(node, _Not):
        return not bool(_evaluate(node.operand, row, fold))
    if isinstance(node, _Function):
        have = row.get(node.prop.name)
        want = node.value.value
        if not isinstance(have, str) or not isinstance(want, str):
            return False
        have, want = _comparable(have, fold), _comparable(want, fold)
        if node.name == "contains":
            return want in have
        if node.name == "startswith":
            return have.startswith(want)
        return have.endswith(want)
    if isinstance(node, _In):
        have = row.get(node.prop)
        found = have is not None and _comparable(str(have), True) in {
            _comparable(v, True) for v in node.values
        }
        return found != node.negate
    left = _comparable(_evaluate(node.left, row, fold), fold or _is_guidish(node))
    right = _comparable(_evaluate(node.right, row, fold), fold or _is_guidish(node))
    if node.op == "eq":
        return left == right
    if node.op == "ne":
        return left != right
    if left is None or right is None:
        return False  # SQL: an ordering comparison with NULL is never true
    try:
        if node.op == "gt":
            return left > right
        if node.op == "ge":
            return left >= right
        if node.op == "lt":
            return left < right
        return left <= right
    except TypeError:
        return False


def _is_guidish(node: _Compare) -> bool:
    return any(isinstance(s, _Literal) and s.edm == "Edm.Guid" for s in (node.left, node.right))


def _sort_key(value: Any) -> tuple[int, Any]:
    """SQL order: NULL first; strings case-insensitively."""
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.casefold())
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value)


def _order(
    rows: list[dict[str, Any]], orderby: str | None, schema: _Schema
) -> list[dict[str, Any]]:
    if not orderby:
        return rows
    keys: list[tuple[str, bool]] = []
    for part in orderby.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise ODataError(400, "0x80060888", f"Syntax error at position 0 in '{orderby}'.")
        schema.check(words[0])
        keys.append((words[0], len(words) == 2 and words[1] == "desc"))
    ordered = list(rows)
    for name, descending in reversed(keys):  # stable sorts, last key first
        ordered.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=descending)  # type: ignore[misc]
    return ordered
