"""``symdl explain`` for sequence models: the recurrent and attention layer derivations,
and the two-step worked example ``symdl explain --model lstm --numeric`` prints."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..backends.trace import numeric_backprop
from ..errors import UsageError
from ..graph import Graph
from ..nn.attention_rules import ATTENTION_LAYERS, attention_layer_derivation
from ..nn.recurrent import GRU, LSTM, RNN
from ..nn.rnn_rules import RNN_LAYERS, rnn_layer_derivation
from ..printing import chains as pc

__all__ = ["SEQ_LAYERS", "SEQ_EXPLAIN_MODELS", "explain_model", "seq_layer_derivation", "tiny_rows",
           "tiny_sequence", "TINY_SEQ"]

SEQ_LAYERS = RNN_LAYERS + ATTENTION_LAYERS
#: ``explain --model`` choices printed as their layer's derivation (a digits model's
#: unrolled chains would list thousands of paths)
SEQ_EXPLAIN_MODELS = {"rnn": "rnn", "lstm": "lstm", "gru": "gru", "transformer": "transformer"}

# two steps of one input, one hidden unit; L = Σ_t c_t h_t: every number fits on a line
TINY_SEQ = {
    "x": np.array([1.0, -2.0]).reshape(2, 1, 1),
    "c": np.array([0.5, 1.0]).reshape(2, 1, 1),
    # gate rows in torch's order (LSTM i, f, g, o; GRU r, z, n)
    "lstm": {"weight_ih_l0": [0.5, -1.0, 1.0, 0.5], "weight_hh_l0": [1.0, 0.5, -0.5, 1.0],
             "bias_ih_l0": [0.0, 1.0, 0.0, 0.0], "bias_hh_l0": [0.0, 0.0, 0.0, 0.0]},
    "gru": {"weight_ih_l0": [0.5, -1.0, 1.0], "weight_hh_l0": [1.0, 0.5, -0.5],
            "bias_ih_l0": [0.0, 1.0, 0.0], "bias_hh_l0": [0.0, 0.0, 0.5]},
    "rnn": {"weight_ih_l0": [0.5], "weight_hh_l0": [-1.0], "bias_ih_l0": [0.25],
            "bias_hh_l0": [0.0]},
}


@lru_cache(maxsize=None)
def seq_layer_derivation(name: str):
    """The derivation of one of :data:`SEQ_LAYERS`."""
    if name in RNN_LAYERS:
        return rnn_layer_derivation(name)
    if name in ATTENTION_LAYERS:
        return attention_layer_derivation(name)
    raise UsageError(f"unknown sequence layer {name!r} (choose from: {', '.join(SEQ_LAYERS)})")


def tiny_rows(kind: str = "lstm") -> list:
    """Every node's value and ``∂L/∂node`` for :data:`TINY_SEQ`, from the NumPy backend."""
    if kind not in RNN_LAYERS:
        raise UsageError(f"explain --numeric works a two-step example for {', '.join(RNN_LAYERS)}"
                         f"; {kind} has none (its layer derivation prints without --numeric)")
    g = Graph()
    x = g.input("x", (2, 1, 1), "float64")
    m = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](1, 1, dtype="float64")
    y = m.build(g, x)
    c = g.input("c", g.shape(y), "float64")
    L = g.add("sum", g.add("mul", c, y, name="cy"), name="L")
    params = {k: np.array(v).reshape(getattr(m, k).shape) for k, v in TINY_SEQ[kind].items()}
    return numeric_backprop(g, L, {"x": TINY_SEQ["x"], "c": TINY_SEQ["c"]}, params,
                            flavor="numpy")


def _num(v) -> str:
    a = np.asarray(v, dtype=float).ravel()
    return "  ".join(f"{e:.6g}" for e in a)


def tiny_sequence(kind: str = "lstm", fmt: str = "text") -> str:
    """The worked example as text, LaTeX, Markdown or JSON."""
    rows = tiny_rows(kind)
    if fmt == "json":
        return pc.backprop_json(rows)
    if fmt == "latex":
        return pc.backprop_latex(rows)
    w = ", ".join(f"{k.removesuffix('_l0')} = [{_num(v)}]" for k, v in TINY_SEQ[kind].items())
    out = [f"worked backprop through time on a two-step {kind.upper()} (one input, one hidden "
           f"unit, h_0 = 0): x = [{_num(TINY_SEQ['x'])}], L = Σ_t c_t h_t with c = "
           f"[{_num(TINY_SEQ['c'])}]", f"  weights (gate rows in torch's order): {w}",
           "  (nodes l0.t0.… belong to step 1, l0.t1.… to step 2; ∂L/∂ of a step-1 node sums "
           "the paths through step 2; the values are the NumPy backend's)"]
    width = max(len(r.node) for r in rows)
    for r in rows:
        up = "" if r.upstream is None else f"   ∂L/∂ = {_num(r.upstream)}"
        out.append(f"  {r.node:<{width}}  {r.op:<9} {_num(r.value)}{up}")
    return "\n".join(out) + "\n"


def explain_model(args) -> int:
    """``symdl explain --model rnn|lstm|gru|transformer``: the layer's derivation, and with
    ``--numeric`` the two-step worked example (recurrent models)."""
    import json
    from dataclasses import asdict
    from ..printing.layers import layer_latex, layer_text
    from .train import explicit_flags
    kind = SEQ_EXPLAIN_MODELS[args.model]
    given = sorted(explicit_flags(getattr(args, "argv", ())) - {"model"})
    given += [f for f in ("param", "example") if f"--{f}" in getattr(args, "argv", ())]
    if given:   # a fixed instance: a flag would be ignored
        raise UsageError(f"--{given[0].replace('_', '-')} does not apply to explain --model "
                         f"{args.model} (it prints the layer's derivation and a fixed two-step "
                         "example)")
    if args.numeric and kind not in RNN_LAYERS:
        tiny_rows(kind)   # the one-line error
    d = seq_layer_derivation(kind)
    if args.format == "json":
        doc = asdict(d)
        if args.numeric:
            doc["backprop"] = json.loads(tiny_sequence(kind, "json"))
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        return 0
    print((layer_latex if args.format == "latex" else layer_text)(d), end="")
    if args.numeric:
        print("", tiny_sequence(kind, args.format), sep="\n" if args.format == "text" else "",
              end="")
    return 0
