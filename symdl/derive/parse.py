"""A safe parser for derivation input: Python syntax, an allowlist, nothing executed.

User text never reaches ``sympify``, ``parse_expr`` or ``eval``.  It is read
with :func:`ast.parse` and only these nodes are turned into SymPy:

* numbers (``2``, ``0.5``, ``1e-3``), names, ``+ - * / **``, unary ``-``/``+``;
* calls, by name, of the elementary functions :data:`symdl.derive.opfuncs.ELEMENTARY`
  (``exp``, ``log`` and ``log(x, base)``, ``sqrt``, ``cbrt``, ``root(x, n)``, the six
  trigonometric functions and their inverses ``asin``…``acsc``, the hyperbolic ones and
  their inverses, ``abs``, ``erf``, ``max``, ``min``) and of the
  registry's elementwise ops (``sigmoid(z)``, ``softplus(x)``, ``relu(x)``,
  ``leaky_relu(x, alpha)``, ``mse(x, t)``; see :func:`symdl.derive.opfuncs.op_names`),
  positional arguments only.

Every other free name is a real symbol: ``beta1``, ``gamma``, ``lambda``,
``E``, ``N`` are plain symbols (``lambda`` is accepted although it is a Python
keyword).  Two names are constants, by choice: ``pi`` is π and ``e`` is
Euler's number, so ``e**x`` means ``exp(x)``; write ``E`` for a variable.
Names starting with ``_`` are refused, and so are ``oo``, ``zoo``, ``inf``,
``infinity``, ``nan`` (any case) and ``I``, which read as SymPy's infinities,
NaN and imaginary unit: everything here is a finite real value.  A constant
that is not finite (``1/0``, ``log(0)``) or not real (``sqrt(-1)``) is refused,
and so is a kinked function (``abs``, ``max``, ``relu``, …) of an argument
that is not real for every real value of its variables (``abs(sqrt(x))``: its
rules hold for real arguments only).  Input is limited to
:data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels of nesting (a chain
``a + b + c`` counts as one level), integer powers to :data:`MAX_EXPONENT`.
Anything else raises :class:`ParseError` with the column (1-based) of the
offending character.
"""
from __future__ import annotations

import ast
import math
import re
import unicodedata

import sympy as sp

from ..errors import UsageError
from ..ops import OPS
from .opfuncs import ELEMENTARY, ELEMENTARY_ARITY, op_function, op_names

__all__ = ["ParseError", "parse", "format_caret", "MAX_LENGTH", "MAX_DEPTH", "MAX_EXPONENT",
           "CONSTANTS"]

MAX_LENGTH = 2000
MAX_DEPTH = 50
MAX_EXPONENT = 1000
_MAX_DIGITS = 10_000
#: Names that are constants rather than symbols.
CONSTANTS = {"pi": sp.pi, "e": sp.E}
#: Names refused: they read as SymPy's infinities, NaN and imaginary unit.
_NOT_NAMES = {"oo": "infinity", "zoo": "complex infinity", "inf": "infinity",
              "infinity": "infinity", "nan": "NaN", "I": "the imaginary unit"}
#: Elementary functions with a kink: their rules hold for real arguments only.
_KINKED = {"abs", "max", "min"}
_LAMBDA = "_lmbda"  # same length as "lambda": columns do not move
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_GROUP = {ast.Add: 0, ast.Sub: 0, ast.Mult: 1, ast.Div: 1}
_REFUSED = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.Compare: "comparisons", ast.BoolOp: "and/or", ast.IfExp: "conditional expressions",
    ast.List: "lists", ast.Tuple: "tuples", ast.Set: "sets", ast.Dict: "dicts",
    ast.JoinedStr: "f-strings", ast.NamedExpr: "assignments", ast.Starred: "* unpacking",
    ast.Await: "await expressions", ast.Yield: "yield expressions",
    ast.YieldFrom: "yield expressions", ast.Slice: "slices",
}


class ParseError(UsageError):
    """Text that is not an allowed expression; ``column`` is 1-based.

    ``str(exc)`` is one line; :func:`format_caret` shows the text with a caret.
    """

    def __init__(self, message: str, column: int, text: str | None = None):
        self.message, self.column, self.text = message, int(column), text
        super().__init__(f"{message} (column {self.column})")

    @property
    def cli_detail(self) -> str | None:
        """The text with a caret under the column (the CLI prints it after the message)."""
        return None if self.text is None else format_caret(self.text, self.column)


def format_caret(text: str, column: int, width: int = 72) -> str:
    """Two lines: ``text`` (a window of it when long) and a caret under ``column``.

    Examples
    --------
    >>> print(format_caret("x + y.z", 7))
      x + y.z
            ^
    """
    line = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    i = max(0, min(int(column) - 1, len(line)))
    start = max(0, min(i - width // 2, len(line) - width))
    shown = line[start:start + width]
    pre = "..." if start > 0 else ""
    post = "..." if start + width < len(line) else ""
    return f"  {pre}{shown}{post}\n  {' ' * (len(pre) + i - start)}^"


def parse(text: str) -> sp.Expr:
    """The SymPy expression ``text`` denotes, every free name a real symbol.

    Examples
    --------
    >>> parse("1/(1+exp(-z))")
    1/(1 + exp(-z))
    >>> parse("sigmoid(beta1*x) + lambda")
    lambda + sigmoid(beta1*x)
    """
    if not isinstance(text, str):
        raise ParseError(f"expected text, not {type(text).__name__}", 1)
    try:
        return _parse(text)
    except ParseError as exc:
        exc.text = text
        raise


def _parse(text: str) -> sp.Expr:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    body = text.strip()
    if not body:
        raise ParseError("empty expression", 1)
    lead = len(text) - len(text.lstrip())
    for i, c in enumerate(body):
        if unicodedata.category(c)[0] == "C" and c != "\t":
            what = "line break" if c in "\r\n" else f"control character {c!r}"
            raise ParseError(f"the expression must be one line, without a {what}", i + 1 + lead)
    _check_nesting(body, lead)
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        # ``lambda`` may be a variable name: read it as one if that parses
        renamed = re.sub(r"\blambda\b", _LAMBDA, body)
        tree = _try_parse(renamed) if renamed != body else None
        if tree is None:
            col = (exc.offset or 1) + lead
            raise ParseError(f"invalid syntax: {exc.msg}", min(col, len(text) + 1)) from None
        body = renamed
    except (RecursionError, MemoryError, ValueError):
        raise ParseError("expression too deeply nested", 1) from None
    return _Builder(body, lead).build(tree.body, 1)


def _try_parse(body: str):
    try:
        return ast.parse(body, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None


def _check_nesting(body: str, lead: int) -> None:
    depth = 0
    for i, c in enumerate(body):
        depth += (c in "([{") - (c in ")]}")
        if depth > MAX_DEPTH:
            raise ParseError(f"brackets nested deeper than {MAX_DEPTH}", i + 1 + lead)


class _Builder:
    """AST to SymPy for one line; columns reported in characters of the original."""

    def __init__(self, body: str, lead: int):
        self.raw, self.lead = body.encode("utf-8"), lead
        self.calls = {**{n: None for n in op_names()}, **ELEMENTARY}

    def col(self, node, byte_offset: int | None = None) -> int:
        off = node.col_offset if byte_offset is None else byte_offset
        return len(self.raw[:off].decode("utf-8", errors="ignore")) + 1 + self.lead

    def fail(self, message: str, node, byte_offset: int | None = None):
        raise ParseError(message, self.col(node, byte_offset))

    def build(self, node, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH}", node)
        if isinstance(node, ast.BinOp) and type(node.op) in _GROUP:
            out = self._chain(node, depth)
        elif isinstance(node, ast.BinOp):
            out = self._binop(node, self.build(node.left, depth + 1),
                              self.build(node.right, depth + 1))
        elif isinstance(node, ast.UnaryOp):
            out = self._unary(node, depth)
        elif isinstance(node, ast.Constant):
            out = self._number(node)
        elif isinstance(node, ast.Name):
            out = self._name(node)
        elif isinstance(node, ast.Call):
            out = self._call(node, depth)
        else:
            self._refuse(node)
        if out.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            self.fail("not finite (a division by zero?)", node)
        if out.is_number and not out.is_Rational and not out.is_Float:
            self._check_constant(out, node)
        return out

    def _check_constant(self, value: sp.Expr, node) -> None:
        """A constant subexpression must be a finite real number of sane size
        (``exp(exp(exp(3)))`` has 10^8 digits: SymPy would work on it for minutes)."""
        try:
            v = value.evalf(15)
            if v.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                self.fail("not finite", node)
            re, im = v.as_real_imag()
            big = re.is_Number and re != 0 and abs(sp.log(abs(re), 10)) > _MAX_DIGITS
        except (OverflowError, ValueError, ArithmeticError, RecursionError):
            big = True
        if big:
            self.fail(f"number out of range (beyond 1e±{_MAX_DIGITS})", node)
        if im.is_Number and im != 0:
            text = self.raw[node.col_offset:node.end_col_offset].decode("utf-8", "replace")
            self.fail(f"not real: {text} = {sp.sstr(value)} (variables and values are "
                      "real here)", node)

    def _refuse(self, node):
        what = _REFUSED.get(type(node), type(node).__name__)
        if isinstance(node, ast.Attribute):  # point at the attribute's name
            self.fail(f"{what} is not allowed", node, node.end_col_offset - len(node.attr))
        if isinstance(node, ast.Subscript):
            self.fail(f"{what} are not allowed", node.slice)
        self.fail(f"{what} {'is' if what == 'attribute access' else 'are'} not allowed", node)

    def _chain(self, node, depth: int) -> sp.Expr:
        """``a + b - c`` (or ``* /``) iteratively: long sums are not deep."""
        group, rights = _GROUP[type(node.op)], []
        while isinstance(node, ast.BinOp) and _GROUP.get(type(node.op)) == group:
            rights.append(node)
            node = node.left
        acc = self.build(node, depth + 1)
        for op_node in reversed(rights):
            acc = self._binop(op_node, acc, self.build(op_node.right, depth + 1))
        return acc

    def _binop(self, node, a, b) -> sp.Expr:
        op = type(node.op)
        if op not in _OPS:
            self.fail(f"operator {_symbol(node.op)} is not allowed (use + - * / **)", node.right)
        if op is ast.Pow:
            self._check_power(node, a, b)
            return a**b
        if op is ast.Div and b == 0:
            self.fail("not finite: division by zero", node.right)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        return a * b if op is ast.Mult else a / b

    def _check_power(self, node, a, b) -> None:
        if b.is_Integer and abs(int(b)) > MAX_EXPONENT:
            self.fail(f"integer exponent larger than {MAX_EXPONENT}", node.right)
        if a.is_Rational and b.is_Rational and a not in (0, 1, -1):
            size = max(abs(a.p), a.q)
            if abs(float(b)) * math.log10(size) > _MAX_DIGITS:
                self.fail("number too large", node)
        if a == 0 and b.is_number and b.is_negative:
            self.fail("not finite: division by zero", node)

    def _unary(self, node, depth: int) -> sp.Expr:
        if isinstance(node.op, ast.USub):
            return -self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth + 1)
        self.fail(f"operator {_symbol(node.op)} is not allowed (use + - * / **)", node)

    def _number(self, node) -> sp.Expr:
        v = node.value
        if isinstance(v, bool) or v is None or v is Ellipsis:
            self.fail(f"{v!r} is not a number", node)
        if isinstance(v, int):
            if v.bit_length() > 4 * _MAX_DIGITS:
                self.fail("number too large", node)
            return sp.Integer(v)
        if isinstance(v, float):
            if not math.isfinite(v):
                self.fail("number too large", node)
            return sp.Float(v)
        what = {str: "strings", bytes: "bytes", complex: "complex numbers"}.get(type(v), "literals")
        self.fail(f"{what} are not allowed", node)

    def _name(self, node) -> sp.Expr:
        name = node.id
        if name == _LAMBDA:
            return sp.Symbol("lambda", real=True)
        if name.startswith("_"):
            self.fail(f"names may not start with '_': {name}", node)
        if name in CONSTANTS:
            return CONSTANTS[name]
        refused = _NOT_NAMES.get(name if name == "I" else name.lower())
        if refused:
            self.fail(f"{name} is not a variable name here (it reads as {refused}; values are "
                      "finite and real): choose another name", node)
        if name in self.calls:
            self.fail(f"{name} is a function: call it as {name}(...)", node)
        return sp.Symbol(name, real=True)

    def _call(self, node, depth: int) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            self.build(node.func, depth + 1)  # refuses attributes, lambdas, …
            self.fail("only named functions can be called", node)
        name = node.func.id
        if name not in self.calls:
            known = ", ".join(sorted(self.calls))
            self.fail(f"unknown function {name!r} (known: {known})", node)
        for k in node.keywords:
            self.fail("keyword arguments are not allowed", k)
        for a in node.args:
            if isinstance(a, ast.Starred):
                self.fail("* unpacking is not allowed", a)
        args = [self.build(a, depth + 1) for a in node.args]
        if name in _KINKED or (name not in ELEMENTARY and _real_only(OPS[name])):
            for a, arg in zip(node.args, args):
                where = _complex_at(arg)
                if where:
                    self.fail(f"{name} needs a real argument, and {sp.sstr(arg)} is not real at "
                              f"{where} (its derivative rule holds for real arguments only)", a)
        if name in ELEMENTARY:
            lo, hi = ELEMENTARY_ARITY.get(name, (1, 1))
            if not lo <= len(args) <= hi:
                want = f"{lo} argument{'s' if lo > 1 else ''}" if lo == hi else \
                    f"at least {lo} arguments" if hi >= 100 else f"{lo} or {hi} arguments"
                self.fail(f"{name} takes {want}, not {len(args)}", node)
            if name in ("log", "root") and len(args) == 2:
                self._check_base(name, args[1], node)
            return ELEMENTARY[name](*args)
        fn = op_function(name)
        lo, hi = min(fn.nargs), max(fn.nargs)
        if not lo <= len(args) <= hi:
            want = f"{lo} argument" if lo == hi == 1 else \
                f"{lo} arguments" if lo == hi else f"{lo} to {hi} arguments"
            self.fail(f"{name} takes {want}, not {len(args)}", node)
        return fn(*args)

    def _check_base(self, name: str, base: sp.Expr, node) -> None:
        """A logarithm's base must be a positive number other than 1; a root's index nonzero."""
        bad = (base.is_number and (base == 1 or base.is_positive is False)) if name == "log" \
            else base == 0
        if bad:
            what = "a positive number other than 1" if name == "log" else "nonzero"
            self.fail(f"the {'base' if name == 'log' else 'index'} of {name} must be {what}, "
                      f"not {sp.sstr(base)}", node.args[1])


def _real_only(op) -> bool:
    """An op whose rules hold for real arguments only: kinked, or smooth but declared
    with ``|x|`` (softsign: its derivative is written with ``sign``)."""
    return not op.smooth or op.expr.has(sp.Abs, sp.Max, sp.Min, sp.Piecewise, sp.sign)


#: Where arguments of kinked functions are tried when SymPy cannot tell they are real.
_PROBES = (-2.7, 0.45, -0.6, 1.8)


def _complex_at(e: sp.Expr) -> str:
    """A real point (``"x = -0.6"``) where ``e`` has a non-real value, else ``""``
    (``e`` is real where defined: by SymPy's assumptions, or at every probe)."""
    if e.is_extended_real:
        return ""
    syms = sorted(e.free_symbols, key=lambda s: s.name)
    if e.xreplace({s: sp.Symbol(s.name, real=True, nonzero=True) for s in syms}).is_extended_real:
        return ""  # y/x: real wherever it is defined
    for k in range(len(_PROBES) ** min(len(syms), 2)):
        pt = {s: sp.Float(_PROBES[(k // len(_PROBES) ** (i % 2) + i) % len(_PROBES)])
              for i, s in enumerate(syms)}
        try:
            re, im = e.xreplace(pt).evalf(15).as_real_imag()
            bad = im.is_Number and re.is_Number and abs(im) > 1e-12 * max(1, abs(re))
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            bad = False
        if bad:
            return ", ".join(f"{s} = {float(v):g}" for s, v in pt.items())
    return ""


def _symbol(op) -> str:
    return {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~",
            ast.Not: "not"}.get(type(op), type(op).__name__)
