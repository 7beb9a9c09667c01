"""The training graph: model, per-example loss, mean, and penalty terms."""
from __future__ import annotations

from ..graph import Graph
from ..ops import OPS, RowLossOp


def build_training_graph(model, n_features: int, loss: str, loss_params: dict, dtype: str,
                         target_shape=None, l1: float = 0.0, l2: float = 0.0):
    """``x -> model -> loss``, ``L = mean(loss) + (λ₂/2) Σ‖W‖² + λ₁ Σ|W|``.

    Penalties cover weight matrices (parameters of two or more dimensions),
    not biases; their gradients come from reverse mode like any other.
    ``target_shape`` defaults to class labels ``("N",)`` for a row loss and
    to the output's shape otherwise.  Returns ``(graph, output node, L)``.
    """
    g = Graph()
    # n_features: an int (rows of features) or a tuple (one example's shape: (C, H, W) images)
    x = g.input("x", ("N", *n_features) if isinstance(n_features, tuple) else ("N", n_features),
                dtype)
    out = model.build(g, x)
    rowloss = isinstance(OPS[loss], RowLossOp)
    if target_shape is None:
        target_shape = ("N",) if rowloss else g.shape(out)
    y = g.input("y", target_shape, "int64" if rowloss else dtype)
    per_example = g.add(loss, out, y, name="loss", **loss_params)
    L = g.add("mean", per_example, name="L" if not (l1 or l2) else "data_loss")
    terms = [L]
    weights = [p for p in g.params() if len(g.shape(p)) >= 2]
    for lam, op, scale, tag in ((l2, "square", 0.5, "l2"), (l1, "abs", 1.0, "l1")):
        if lam:
            for w in weights:
                s = g.add("sum", g.add(op, w, name=f"{tag}.{w}.{op}"), name=f"{tag}.{w}.sum")
                terms.append(g.add("scale", s, factor=lam * scale, name=f"{tag}.{w}"))
    if len(terms) > 1:
        acc = terms[0]
        for k, t in enumerate(terms[1:]):
            acc = g.add("add", acc, t, name="L" if k == len(terms) - 2 else None)
        L = acc
    return g, out, L


def distinct_grads(gg, names):
    """``gg`` with a gradient node of its own for each parameter of ``names``: where reverse mode
    gives several parameters the same node (an LSTM's ``bias_ih`` and ``bias_hh``, which only
    ever appear summed), the later ones get a copy (a same-shape ``reshape``), so that each can
    be bound to its own gradient buffer."""
    seen = set()
    for w in names:
        n = gg.grads[w]
        if n in seen:
            gg.grads[w] = gg.graph.add("reshape", n, shape=gg.graph.shape(n), name=f"{n}@{w}")
        seen.add(gg.grads[w])
    return gg
