"""The structural ops' hand-declared transposes, checked exactly.

Each vjp rule is run on explicit small instances of SymPy symbols: the rule
emits ops through an ``emit`` callback that evaluates them eagerly on NumPy
object arrays with the ops' own ``impl``.  The result must equal, entry by
entry, ``sympy.diff`` of ``L = sum(W * f(A))`` (``W`` fresh symbols of the
output's shape).  The adjoint identity ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ is checked in
float64 with random arrays.  An argument given as an integer array (not a
shape) is an index argument: fixed, and with no gradient.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.ops import OPS
from symdl.ops.structural import count, scale_factor, sum_axes

IDX_ROWS = np.array([[2], [0], [2], [1]])           # embedding lookup: rows 2, 0, 2, 1
IDX_REP = np.array([[1, 0, 1], [2, 2, 0]])            # repeats add up in scatter_add

# (op, argument shapes or index arrays, params); every structural op with a vjp needs a case.
CASES = [
    ("matmul", [(2, 3), (3, 2)], {}),
    ("matmul", [(1, 3), (3, 4)], {}),
    ("matmul", [(2, 2, 3), (2, 3, 2)], {}),            # batched
    ("matmul", [(2, 2, 3), (3, 2)], {}),               # shared right operand: reshaped to one GEMM
    ("matmul", [(2, 3), (2, 3, 2)], {}),               # shared left operand: summed over the batch
    ("matmul", [(2, 1, 2, 3), (3, 3, 2)], {}),         # both batch dims broadcast
    ("transpose", [(2, 3)], {}),
    ("transpose", [(2, 3, 2)], {"axes": (2, 0, 1)}),   # a 3-cycle: its inverse is not itself
    ("transpose", [(2, 3, 4)], {"axes": (1, 0, 2)}),
    ("reshape", [(2, 3)], {"shape": (3, 2)}),
    ("reshape", [(2, 3)], {"shape": (6,)}),
    ("reshape", [(6,)], {"shape": (2, 1, 3)}),
    ("sum", [(2, 3)], {}),
    ("sum", [(2, 3)], {"axes": None}),
    ("sum", [(2, 3)], {"axes": 0}),
    ("sum", [(2, 3)], {"axes": 1}),
    ("sum", [(2, 3)], {"axes": -1}),
    ("sum", [(2, 3)], {"axes": 1, "keepdims": True}),
    ("sum", [(2, 3)], {"axes": 0, "keepdims": True}),
    ("sum", [(2, 3, 2)], {"axes": (0, 2)}),
    ("mean", [(2, 3)], {}),
    ("mean", [(2, 3)], {"axes": 0}),
    ("mean", [(2, 3)], {"axes": 1}),
    ("mean", [(2, 3)], {"axes": 1, "keepdims": True}),
    ("mean", [(2, 3, 2)], {"axes": (0, 2)}),
    ("broadcast_to", [(3,)], {"shape": (2, 3)}),
    ("broadcast_to", [(2, 1)], {"shape": (2, 3)}),
    ("broadcast_to", [(1, 3)], {"shape": (2, 3)}),
    ("broadcast_to", [()], {"shape": (2, 2)}),
    ("sum_to", [(2, 3)], {"shape": (3,)}),
    ("sum_to", [(2, 3)], {"shape": (2, 1)}),
    ("sum_to", [(2, 3)], {"shape": (1, 3)}),
    ("sum_to", [(2, 3)], {"shape": ()}),
    ("scale", [(2, 3)], {"factor": 2.5}),
    ("scale", [(2, 3)], {"factor": -0.25}),
    ("scale", [(2, 3)], {"factor": ("1/count", (2, 3), 1)}),
    ("permute", [(2, 3, 2)], {"axes": (2, 0, 1)}),
    ("permute", [(2, 1, 3, 2)], {"axes": (3, 1, 0, 2)}),
    ("permute", [(3,)], {"axes": (0,)}),
    ("slice", [(4, 3)], {"begin": (1, 0), "end": (3, None)}),
    ("slice", [(5, 4)], {"begin": (0, 1), "end": (5, 4), "step": (2, 2)}),
    ("slice", [(5, 3)], {"begin": (1, 0), "end": (4, None), "step": (2, 1)}),   # 1:4:2 ends early
    ("slice", [(3, 2)], {"begin": (2, 0), "end": (2, None)}),                    # empty
    ("slice", [(2, 6, 2)], {"begin": (0, 2, 1), "end": (None, 5, 2), "step": (1, 2, 1)}),
    ("pad", [(2, 3)], {"low": (1, 0), "high": (0, 2)}),
    ("pad", [(2, 3)], {"low": (0, 1), "high": (1, 1), "interior": (1, 2)}),
    ("pad", [(3,)], {"interior": (1,)}),
    ("pad", [(2, 3)], {}),                                                       # no padding
    ("slice", [(2, 3)], {"end": (2, None)}),                                     # the whole array
    ("concat", [(2, 3), (1, 3)], {"axis": 0}),
    ("concat", [(2, 1), (2, 3), (2, 2)], {"axis": 1}),
    ("concat", [(2, 3, 2)], {"axis": -1}),
    ("concat", [(2, 1, 2), (2, 2, 2)], {"axis": -2}),
    ("gather", [(3, 2), IDX_ROWS], {"axis": 0}),                   # embedding lookup
    ("gather", [(2, 3), np.array([[2], [0]])], {"axis": 1}),      # arg-max routing
    ("gather", [(2, 3), IDX_REP], {"axis": 1}),
    ("gather", [(1, 3), IDX_REP], {"axis": 1}),                     # x broadcast on axis 0
    ("gather", [(2, 3, 2), np.array([[[0, 1]], [[2, 2]]])], {"axis": 1}),
    ("scatter_add", [(4, 2), IDX_ROWS], {"axis": 0, "shape": (3, 2)}),
    ("scatter_add", [(2, 3), IDX_REP], {"axis": 1, "shape": (2, 3)}),
    ("scatter_add", [(2, 3), IDX_REP], {"axis": 1, "shape": (1, 4)}),
    ("scatter_add", [(2, 3), IDX_REP], {"axis": -1, "shape": (2, 5)}),
    # more unfold/fold cases (strides, paddings, dilations, 1-D) in tests/test_conv.py
    ("unfold", [(1, 2, 3, 3)], {"kernel": 2, "stride": 1, "padding": 1}),
    ("fold", [(1, 8, 4)], {"output_size": (3, 3), "kernel": 2, "stride": 1}),
]


def _is_index(spec) -> bool:
    return isinstance(spec, np.ndarray)


def _shape(spec) -> tuple:
    return spec.shape if _is_index(spec) else tuple(spec)


def make_args(shapes, make):
    """Arguments of a case: ``make(i, shape)`` for arrays, index arrays as given."""
    return [spec if _is_index(spec) else make(i, tuple(spec)) for i, spec in enumerate(shapes)]


def _case_id(case):
    name, shapes, params = case
    p = ",".join(f"{k}={v}" for k, v in params.items())
    args = "x".join(f"idx{s.shape}" if _is_index(s) else str(s) for s in shapes)
    return f"{name}-{args}" + (f"-{p}" if p else "")


def test_every_structural_rule_has_cases():
    with_rules = {op.name for op in OPS.declared("structural") if op.vjp is not None}
    assert with_rules, "no structural ops with vjp rules found"
    missing = with_rules - {c[0] for c in CASES}
    assert not missing, f"structural ops without test cases: {sorted(missing)}"


# ------------------------------------------------------------ interpreter
class Eager:
    """An ``emit`` that evaluates each emitted op at once on arrays (object
    arrays of SymPy expressions, or floats).  Nodes are the arrays."""

    def __init__(self):
        self.emitted = []

    def __call__(self, op, *args, **params):
        opdef = OPS[op]
        assert opdef.kind == "structural", f"a vjp rule emitted the non-structural op {op}"
        assert len(args) == opdef.arity or (opdef.arity is None and args), \
            f"{op} emitted with {len(args)} arguments"
        shapes = [np.shape(a) for a in args]
        out = apply(op, [np.asarray(a) for a in args], params)
        want = tuple(opdef.infer(shapes, params, names=tuple(f"arg{i}" for i in range(len(args)))))
        assert out.shape == want, f"{op}{params}: impl gives {out.shape}, infer says {want}"
        self.emitted.append((op, params))
        return out


def apply(name, args, params):
    """The forward op on arrays; ``scale`` resolves a ``1/count`` factor."""
    if name == "scale":
        return np.asarray(args[0]) * scale_factor(params["factor"], np.shape(args[0]))
    if name == "sum_to" and args[0].dtype == object and tuple(params["shape"]) == ():
        # impl's np.sum(...).reshape(()) needs a NumPy scalar; on an object
        # array a full sum is a bare SymPy expression: same formula, boxed
        axes = sum_axes((), args[0].shape)
        return np.asarray(np.sum(args[0], axis=axes), dtype=object).reshape(())
    return np.asarray(OPS[name].impl(*args, **params))


def vjp(name, args, params, g):
    emit = Eager()
    shapes = [np.shape(a) for a in args]
    out = OPS[name].vjp(emit, list(args), shapes, dict(params), g)
    assert len(out) == len(args)
    return out


def symbols_array(prefix, shape):
    n = int(np.prod(shape)) if shape else 1
    syms = sp.symbols(f"{prefix}0:{n}", real=True)
    return np.array(syms, dtype=object).reshape(shape)


# ------------------------------------------------------------- exact check
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_vjp_equals_sympy_diff(case):
    name, shapes, params = case
    args = make_args(shapes, lambda i, s: symbols_array(chr(ord("a") + i), s))
    out = apply(name, args, params)
    want_shape = OPS[name].infer([_shape(s) for s in shapes], params,
                                 names=tuple(f"arg{i}" for i in range(len(shapes))))
    assert out.shape == tuple(want_shape)
    W = symbols_array("w", out.shape)
    L = sp.expand(sum(np.ravel(W * out).tolist(), sp.Integer(0)))
    grads = vjp(name, args, params, W)
    for i, (a, ga) in enumerate(zip(args, grads)):
        if _is_index(shapes[i]):
            assert ga is None, f"{name}: a gradient for the index argument {i}"
            continue
        assert ga is not None, f"{name}: no gradient for argument {i}"
        ga = np.asarray(ga)
        assert ga.shape == a.shape, f"{name}: gradient {ga.shape} for argument {a.shape}"
        for idx in np.ndindex(a.shape):
            want = sp.diff(L, a[idx])
            got = sp.sympify(ga[idx])
            assert sp.expand(got - want) == 0, f"{name} d/d{a[idx]}: {got} != {want}"


def test_vjp_detects_a_wrong_rule():
    """The exact check is not vacuous: a transpose with the wrong inverse
    permutation (the permutation itself) is caught."""
    shape = (2, 2, 2)  # a cube: the wrong rule still has the right shape
    args = [symbols_array("a", shape)]
    axes = (2, 0, 1)
    out = apply("transpose", args, {"axes": axes})
    W = symbols_array("w", out.shape)
    L = sp.expand(sum(np.ravel(W * out).tolist(), sp.Integer(0)))
    wrong = np.transpose(W, axes)  # should be the inverse permutation (1, 2, 0)
    right = vjp("transpose", args, {"axes": axes}, W)[0]
    assert any(sp.expand(wrong[idx] - sp.diff(L, args[0][idx])) != 0 for idx in np.ndindex(shape))
    assert all(sp.expand(right[idx] - sp.diff(L, args[0][idx])) == 0 for idx in np.ndindex(shape))


def test_mean_scales_by_the_count():
    x = np.arange(6.0).reshape(2, 3)
    (gx,) = vjp("mean", [x], {"axes": 1}, np.ones(2))
    np.testing.assert_array_equal(gx, np.full((2, 3), 1 / 3))
    assert count((2, 3), 1) == 3 and count((2, 3), None) == 6 and count((2, 3, 4), (0, 2)) == 8


# ---------------------------------------------------------------- adjoint
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_adjoint_identity(case):
    """⟨A x, y⟩ = ⟨x, Aᵀ y⟩ with A the op in one argument (others fixed)."""
    name, shapes, params = case
    rng = np.random.default_rng(len(_case_id(case)))
    args = make_args(shapes, lambda i, s: rng.normal(size=s))
    out = apply(name, args, params)
    y = rng.normal(size=out.shape)
    grads = vjp(name, args, params, y)
    for i in range(len(args)):
        if _is_index(shapes[i]):
            continue
        x = rng.normal(size=shapes[i])
        xa = list(args)
        xa[i] = x
        # the part of the op that is linear in argument i: matmul is bilinear,
        # concat jointly linear (the other parts add a constant, removed here)
        za = list(args)
        za[i] = np.zeros(shapes[i])
        lhs = float(np.vdot(apply(name, xa, params) - apply(name, za, params), y))
        # the transpose at y is the same for any x: the op is linear in arg i
        gi = vjp(name, xa, params, y)[i]
        np.testing.assert_allclose(gi, grads[i], rtol=1e-12, atol=1e-12)
        rhs = float(np.vdot(x, np.asarray(gi)))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12), f"{name} argument {i}"


def test_each_op_declares_its_printed_local_factor():
    """derive/chains asks the op (no branching on names there)."""
    from symdl.derive.chains import derive_graph
    from symdl.graph import Graph
    from symdl.printing.chains import factor_latex, factor_text
    g = Graph()
    x = g.input("x", (3, 4), "float64")
    W = g.param("W", (4, 2), "float64")
    i = g.input("i", (2, 1), "int64")
    h = g.add("gather", g.add("matmul", g.add("slice", x, begin=(1, 0), end=(3, None)), W), i,
              axis=0)
    L = g.add("sum", g.add("permute", h, axes=(1, 0)), name="L")
    kinds = {f.op: f for f in derive_graph(g, L).chains["W"][0].factors}
    assert kinds["matmul"].kind == "left" and kinds["matmul"].operand == "slice1"
    assert kinds["permute"].kind == "transpose"
    assert kinds["sum"].kind == "reduce"
    assert kinds["gather"].kind == "linear"
    assert "scatter-add back to the entries i picked" in factor_text(kinds["gather"])
    assert r"\text{scatter-add" in factor_latex(kinds["gather"])
    assert all(OPS[o.name].local_factor(("a", "b"), {}, 0)[0] in
               ("left", "right", "transpose", "reduce", "linear")
               for o in OPS.declared("structural"))
