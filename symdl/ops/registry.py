"""The op registry: every op is declared once, here or in a sibling module.

Elementwise ops are SymPy expressions in real symbols.  Their derivatives
are ``sympy.diff`` of the declaration; a form in terms of the op's output
(σ' = y(1 − y)) or a simpler stated form may be attached, and is a *claim*
that :func:`symdl.ops.claims.check_op` verifies against ``sympy.diff``.

The gradient of an elementwise op with respect to input ``i`` is itself an
elementwise op, ``<name>.grad<i>``, whose expression is ``g * ∂f/∂x_i`` over
the op's inputs, its output ``y`` and the upstream gradient ``g``.  It is
derived on first use and cached, so code generation, fusion and the
``kernels/`` listing treat forward and backward kernels alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from functools import cached_property

import sympy as sp

from ..errors import UsageError

__all__ = ["OPS", "OpBase", "ElementwiseOp", "Registry", "G", "Y", "activation", "elementwise",
           "real", "register"]

#: The output of an op, in output-form derivatives.
Y = sp.Symbol("y", real=True)
#: The upstream gradient in derived backward ops.
G = sp.Symbol("g", real=True)


def real(names: str):
    """Real SymPy symbols (``real=True`` always: ``d|x|/dx`` is then ``sign(x)``)."""
    return sp.symbols(names, real=True)


class OpBase:
    """Common part of every op definition."""

    name: str
    kind: str
    arity: int
    params: dict

    def __repr__(self) -> str:
        return f"<{self.kind} op {self.name}>"

    def param_values(self, given: dict | None = None) -> dict:
        """Numeric parameters: defaults overridden by ``given`` (keyed by name)."""
        given = dict(given or {})
        out = {}
        for sym, default in self.params.items():
            out[sym.name] = float(given.pop(sym.name, default))
        if given:
            raise UsageError(f"op {self.name} has no parameter {sorted(given)[0]!r}")
        return out


@dataclass(eq=False, repr=False)
class ElementwiseOp(OpBase):
    """An elementwise op ``y = expr(inputs; params)``.

    Parameters
    ----------
    name : registry name.
    inputs : the input symbols, in argument order.
    expr : the plain definition.
    params : ``{symbol: default}`` scalar hyperparameters (``alpha`` of ELU).
    stable : an equal form that kernels evaluate (no overflow for |x| ~ 1e3).
    grad_forms : ``{i: expr}``, a stated form of ``∂y/∂x_i`` in the inputs,
        params and the output ``Y``; checked equal to ``sympy.diff``.
    domain : ``"real"`` or ``"positive"`` per input, for tests.
    smooth : False where the op has a kink (tests avoid the kink points).
    activation : True for a network activation (one input): what ``--activation`` and
        :class:`symdl.nn.Activation` accept (:meth:`Registry.activations`).
    """

    name: str
    inputs: tuple
    expr: sp.Expr
    params: dict = field(default_factory=dict)
    stable: sp.Expr | None = None
    grad_forms: dict = field(default_factory=dict)
    domain: tuple = ()
    smooth: bool = True
    latex: str | None = None
    doc: str = ""
    activation: bool = False
    kind: str = "elementwise"
    derived_from: tuple | None = None
    #: for a derived op: where each input comes from, an argument index of the
    #: op it differentiates, ``"y"`` (that op's output) or ``"g"`` (upstream)
    sources: tuple = ()

    def __post_init__(self):
        self.arity = len(self.inputs)
        if not self.domain:
            self.domain = ("real",) * self.arity

    @property
    def kernel_expr(self) -> sp.Expr:
        """The form kernels evaluate: the stable one when declared."""
        return self.stable if self.stable is not None else self.expr

    @property
    def param_symbols(self) -> tuple:
        return tuple(self.params)

    def diff(self, i: int) -> sp.Expr:
        """``sympy.diff`` of the plain declaration with respect to input ``i``."""
        return _diff_cached(self, i)

    def derivative(self, i: int) -> sp.Expr:
        """The derivative kernels use: the stated form, else ``sympy.diff``
        of the kernel form."""
        if i in self.grad_forms:
            return self.grad_forms[i]
        return _diff_kernel_cached(self, i)

    def grad_op(self, i: int) -> "ElementwiseOp":
        """The backward op ``g * ∂y/∂x_i`` as an elementwise op of its own."""
        return _grad_op_cached(self, i)

    @cached_property
    def uses_output(self) -> bool:
        return any(Y in f.free_symbols for f in self.grad_forms.values())


_DIFF: dict = {}


def _diff_cached(op: ElementwiseOp, i: int) -> sp.Expr:
    key = ("plain", op.name, i)
    if key not in _DIFF:
        _DIFF[key] = sp.diff(op.expr, op.inputs[i])
    return _DIFF[key]


def _diff_kernel_cached(op: ElementwiseOp, i: int) -> sp.Expr:
    key = ("kernel", op.name, i)
    if key not in _DIFF:
        d = sp.diff(op.kernel_expr, op.inputs[i])
        if d.has(sp.DiracDelta):
            # a smooth op's stable form has kinks (|x|, min) whose deltas cancel
            # exactly; a kinked op's delta (sign' of abs, at second order) lives
            # on a set of measure zero, where PyTorch's derivative is 0 too
            d = d.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
        _DIFF[key] = d
    return _DIFF[key]


def _grad_op_cached(op: ElementwiseOp, i: int) -> ElementwiseOp:
    name = f"{op.name}.grad{i}"
    if name in OPS:
        return OPS[name]
    # a derived op already has inputs y and g: its own output and upstream
    # gradient need other names (y_1, g_1 at depth 1, ...)
    depth = op.name.count(".grad")
    ren = {s: sp.Symbol(f"{s.name}_{depth}", real=True) for s in (Y, G) if s in op.inputs}
    inputs = tuple(ren.get(s, s) for s in op.inputs)
    body = G * op.derivative(i).xreplace(ren)
    order = [*inputs, Y, G]
    used = [s for s in order if s in body.free_symbols]
    back = {v: k for k, v in ren.items()}
    gop = ElementwiseOp(
        name=name,
        inputs=tuple(used),
        expr=body,
        params=dict(op.params),
        domain=tuple(_domain_of(op, back.get(s, s)) for s in used),
        smooth=op.smooth,
        doc=f"vector-Jacobian product of {op.name} with respect to argument {i}",
        derived_from=(op.name, i),
        sources=tuple(inputs.index(s) if s in inputs else ("y" if s == Y else "g") for s in used),
    )
    OPS[name] = gop
    return gop


def _domain_of(op: ElementwiseOp, sym) -> str:
    if sym in op.inputs:
        return op.domain[op.inputs.index(sym)]
    return "real"


class Registry(dict):
    """``name -> op definition``; a missing op fails loudly, naming it."""

    def __missing__(self, name):
        base, _, rest = name.rpartition(".grad")
        if rest.isdigit() and base and hasattr(self[base], "grad_op"):
            return self[base].grad_op(int(rest))
        known = ", ".join(sorted(k for k in self if ".grad" not in k))
        raise UsageError(f"unknown op {name!r} (known: {known})")

    def activations(self) -> list:
        """Names of the declared one-input ops marked ``activation=True``, sorted."""
        return [op.name for op in self.declared("elementwise")
                if getattr(op, "activation", False) and op.arity == 1]

    def declared(self, kind: str | None = None) -> list:
        """Declared (not derived) ops, sorted by name, optionally of one kind."""
        return [self[k] for k in sorted(self)
                if getattr(self[k], "derived_from", None) is None
                and (kind is None or self[k].kind == kind)]


OPS: Registry = Registry()


def register(op: OpBase) -> OpBase:
    """Add ``op`` to :data:`OPS` and return it.

    Names are unique: declaring the same op again (a notebook cell run twice) returns the op
    already registered; another definition under a registered name is a
    :class:`~symdl.errors.UsageError` naming the first field that differs.
    """
    old = dict.get(OPS, op.name)
    if old is not None:
        diff = _difference(old, op)
        if diff is None:
            return old
        raise UsageError(f"op {op.name!r} is already declared with another {diff}; "
                         f"give the new definition another name")
    OPS[op.name] = op
    return op


def _fields(op) -> dict:
    """What defines an op: its dataclass fields (or attributes), the docstring aside."""
    names = ([f.name for f in fields(op) if f.compare] if is_dataclass(op)
             else [k for k in vars(op) if not k.startswith("_")])
    return {k: getattr(op, k) for k in names if k != "doc"}


def _difference(old, new):
    """None when ``new`` declares what ``old`` does, else the name of a differing field."""
    if type(old) is not type(new):
        return "kind of op"
    a, b = _fields(old), _fields(new)
    first = [k for k in ("expr", "inputs", "params") if k in a]
    for k in first + sorted((a.keys() | b.keys()) - set(first)):
        try:
            same = bool(a.get(k) == b.get(k))
        except Exception:  # noqa: BLE001  (arrays, functions: an equality that cannot answer)
            same = a.get(k) is b.get(k)
        if not same:
            what = "definition" if k == "expr" else k
            return f"{what} ({_show(a.get(k))}, not {_show(b.get(k))})"
    return None


def _show(v) -> str:
    s = sp.sstr(v) if isinstance(v, (sp.Basic, dict, tuple)) else repr(v)
    return s if len(s) <= 60 else s[:59] + "…"


def elementwise(name, inputs, expr, **kw) -> ElementwiseOp:
    """Declare and register an elementwise op ``name(inputs) = expr``.

    Examples
    --------
    >>> x = real("x")
    >>> op = elementwise("cube_example", x, x**3)
    >>> op.diff(0)
    3*x**2
    >>> elementwise("cube_example", x, x**3) is op   # the same declaration again: harmless
    True
    """
    if isinstance(inputs, sp.Symbol):
        inputs = (inputs,)
    return register(ElementwiseOp(name=name, inputs=tuple(inputs), expr=expr, **kw))


def activation(name, x, expr, **kw) -> ElementwiseOp:
    """Declare a network activation: a one-input elementwise op marked ``activation=True``,
    which ``symdl train --activation NAME`` and :class:`symdl.nn.Activation` accept."""
    if not isinstance(x, sp.Symbol):
        raise UsageError(f"activation {name!r} takes one input symbol, not {x!r}")
    return elementwise(name, x, expr, activation=True, **kw)
