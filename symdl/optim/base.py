"""The optimizer interface and its fused update kernels.

``Optimizer(params, **hyper)`` with ``step()`` / ``zero_grad()``, as in
``torch.optim``.  The update comes from an :class:`~symdl.optim.rules.UpdateRule`
and runs as one generated in-place kernel per call: over the whole flat
buffer when the parameters are packed (:class:`~symdl.nn.parameter.ParamPack`),
else once per parameter.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from ..backends import get_backend
from ..codegen.update import update_kernel_source  # re-exported: the kernels/ listing uses it
from ..errors import UsageError
from .rules import UpdateRule

__all__ = ["Optimizer", "UPDATE_PARALLEL_WORK", "update_kernel_source"]

T = sp.Symbol("t", integer=True, positive=True)

#: Arrays x elements below which an update runs on one thread.  Waking the
#: second thread right after the step's GEMMs costs more than it saves on a
#: model this size (measured in the training loop on the 2-core machines:
#: SGD on 268k parameters 100 us serial against 156 us parallel, Adam 280
#: against 350 us; Adam on 1M parameters 1.0 ms against 0.66 ms).
UPDATE_PARALLEL_WORK = 1 << 20


class Optimizer:
    """Base class.  Optimizers are declared with
    :func:`~symdl.optim.declare.declare_optimizer`, which sets ``declaration`` (the
    constructor's arguments, defaults, checks and the rule's forms); a plain subclass
    may instead set ``rule`` (an :class:`~symdl.optim.rules.UpdateRule`)."""

    rule: UpdateRule
    declaration = None  # an OptimizerDecl, for declared optimizers

    def __init__(self, params, *args, **hyper):
        self.params = list(params)
        if not self.params:
            raise UsageError("optimizer got an empty parameter list")
        for q in self.params:
            if not np.issubdtype(q.data.dtype, np.floating):
                raise UsageError(f"parameter {q.name} has integer dtype {q.data.dtype}; use float32 or float64")
        decl = type(self).declaration
        if decl is not None:
            values, switches = decl.bind(type(self).__name__, args, hyper)
            rule = self.build_rule(**switches)
        else:
            unknown = sorted(set(hyper) - {s.name for s in self.rule.hyper})
            if args or unknown:
                raise UsageError(f"{type(self).__name__} takes hyperparameters by name only: "
                                 f"{', '.join(s.name for s in self.rule.hyper)}")
            rule, values = self.rule, hyper
        self.hyper = {s.name: float(values.get(s.name, d)) for s, d in rule.hyper.items()}
        self.rule = _numeric_init(rule, values)
        self.t = 0
        self._bind_groups()
        self._scalar_fns = [(s.name, sp.lambdify([T, *self.rule.hyper], e, "math"))
                            for s, e in self.rule.scalars.items()]
        self._hyper_names = [s.name for s in self.rule.hyper]
        self._scalar_names = [s.name for s in self.rule.kernel_scalars]  # SymPy work: once
        self._kernels = {}
        self._calls = None

    def _bind_groups(self) -> None:
        """Bind the update to the parameters' current arrays (the flat pack's when they make
        it up, else each parameter's), with fresh state arrays."""
        pack = self.params[0].pack
        self.flat = pack is not None and pack.covers(self.params)
        # arrays and kernels come from the backend that holds the parameters
        self.backend = getattr(pack, "backend", None) or get_backend("numpy")
        groups = [(pack.data, pack.grad)] if self.flat else [(q.data.reshape(-1), q.grad.reshape(-1))
                                                             for q in self.params]
        self._groups = [(d, gr, [self._alloc_state(d, self.rule.init.get(s, 0.0)) for s in self.rule.state])
                        for d, gr in groups]
        self._calls = None

    def rebind(self) -> None:
        """Follow parameters whose arrays moved (a :class:`~symdl.nn.parameter.ParamPack` made
        after this optimizer, as ``Trainer(model, SGD(model.parameters()))`` does); the step
        count and state are kept."""
        saved = self.state_dict()
        self._bind_groups()
        self._kernels = {}
        self.load_state_dict(saved)

    def build_rule(self, **switches) -> UpdateRule:
        """The rule's form for these switches (``amsgrad=True``): the declaration's builder."""
        return type(self).declaration.build(**switches)

    @classmethod
    def variants(cls) -> list:
        """``[(label, rule)]``: every form of the rule, for the ``kernels/`` listing."""
        if cls.declaration is not None:
            return list(cls.declaration.variants)
        return [(cls.__name__.lower(), cls.rule)]

    # -- the interface ----------------------------------------------------
    def zero_grad(self) -> None:
        for d, gr, _ in self._groups:
            gr.fill(0)

    def step(self) -> None:
        """Apply one update in place (parameters and state read and written once)."""
        self.t += 1
        env = dict(self.hyper)
        if self._scalar_fns:
            hyper_vals = [self.hyper[n] for n in self._hyper_names]
            for name, fn in self._scalar_fns:
                env[name] = float(fn(self.t, *hyper_vals))
        scalars = [env[n] for n in self._scalar_names]
        if self._calls is None:  # kernels chosen once, on the first step
            self._calls = [(self._kernel(d), (d, gr, *state)) for d, gr, state in self._groups]
        for kernel, arrays in self._calls:
            kernel(*arrays, *scalars)

    def _alloc_state(self, like: np.ndarray, value: float) -> np.ndarray:
        """One state array shaped as ``like``, filled with ``value`` (the rule's init)."""
        return self.backend.full(like.shape, value, like.dtype)

    def _kernel(self, d: np.ndarray):
        key = (d.dtype.name, d.size * (1 + len(self.rule.state)) >= UPDATE_PARALLEL_WORK)
        if key not in self._kernels:
            self._kernels[key] = self.backend.update_kernel(self.rule, *key)
        return self._kernels[key]

    def derivation(self):
        """The update rule this optimizer runs, with its hyperparameter values
        (text, LaTeX, and ``_repr_latex_`` for Jupyter)."""
        from .derivation import derivation
        return derivation(self)

    def _repr_latex_(self) -> str:  # Jupyter shows the rule it runs, with its values
        return self.derivation()._repr_latex_()

    def state_arrays(self) -> dict:
        """``{"<param>.<state>": array}`` (a copy), for checkpoints."""
        out = {}
        for (d, _, state), owner in zip(self._groups, self._owners()):
            for s, arr in zip(self.rule.state, state):
                out[f"{owner}.{s.name}"] = arr.copy()
        return out

    def load_state_arrays(self, arrays: dict, t: int) -> None:
        for (d, _, state), owner in zip(self._groups, self._owners()):
            for s, arr in zip(self.rule.state, state):
                arr[...] = arrays[f"{owner}.{s.name}"]
        self.t = int(t)

    def state_dict(self) -> dict:
        """The optimizer's state as plain data, as ``torch.optim``'s: ``{"optimizer": class name,
        "rule": the rule's form, "hyper": {name: value}, "t": steps taken, "state": {state
        name: [one array per parameter, in order]}}`` (copies; independent of packing)."""
        state = {s.name: [] for s in self.rule.state}
        for (_, _, arrays), owned in zip(self._groups, self._owned()):
            for s, arr in zip(self.rule.state, arrays):
                host = self.backend.to_host(arr)
                at = 0
                for q in owned:
                    state[s.name].append(host[at:at + q.data.size].reshape(q.shape).copy())
                    at += q.data.size
        return {"optimizer": type(self).__name__, "rule": self.rule.name, "hyper": dict(self.hyper),
                "t": self.t, "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load :meth:`state_dict`'s output; strict: the optimizer, its rule's form, the
        hyperparameter names, the state names and every array's shape must match
        (:class:`~symdl.errors.UsageError` naming the first difference; nothing is loaded then)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise UsageError(f"{name}.load_state_dict needs a dict from state_dict(), "
                             f"got {type(state_dict).__name__}")
        keys = {"optimizer", "rule", "hyper", "t", "state"}
        if set(state_dict) != keys:
            odd = sorted(set(state_dict) ^ keys)
            raise UsageError(f"{name}.load_state_dict: not a state_dict() (key {odd[0]!r} "
                             f"{'missing' if odd[0] in keys else 'unexpected'})")
        if state_dict["optimizer"] != name or state_dict["rule"] != self.rule.name:
            raise UsageError(f"{name}.load_state_dict: the state is of {state_dict['optimizer']} "
                             f"({state_dict['rule']}), this is {name} ({self.rule.name})")
        hyper, state = state_dict["hyper"], state_dict["state"]
        if set(hyper) != set(self.hyper):
            raise UsageError(f"{name}.load_state_dict: hyperparameters {sorted(hyper)} do not "
                             f"match {sorted(self.hyper)}")
        want = [s.name for s in self.rule.state]
        if sorted(state) != sorted(want):
            raise UsageError(f"{name}.load_state_dict: state {sorted(state)} does not match {want}")
        for s in want:
            arrays = state[s]
            if len(arrays) != len(self.params):
                raise UsageError(f"{name}.load_state_dict: {len(arrays)} {s} array(s) for "
                                 f"{len(self.params)} parameter(s)")
            for q, a in zip(self.params, arrays):
                if tuple(np.shape(a)) != q.shape:
                    raise UsageError(f"{name}.load_state_dict: {s} of {q.name or 'a parameter'} has "
                                     f"shape {tuple(np.shape(a))}, the parameter {q.shape}")
        t = state_dict["t"]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise UsageError(f"{name}.load_state_dict: t must be a non-negative integer, got {t!r}")
        for (_, _, arrays), owned in zip(self._groups, self._owned()):
            for s, arr in zip(self.rule.state, arrays):
                parts = [np.asarray(state[s.name][self.params.index(q)], arr.dtype).reshape(-1)
                         for q in owned]
                arr[...] = self.backend.asarray(np.concatenate(parts))
        self.hyper.update({k: float(v) for k, v in hyper.items()})
        self.t = int(t)

    def _owned(self) -> list:
        """The parameters each group covers, in order."""
        return [list(self.params)] if self.flat else [[q] for q in self.params]

    def _owners(self):
        return ["flat"] if self.flat else [q.name or str(i) for i, q in enumerate(self.params)]

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:g}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({hp})"


def _numeric_init(rule: UpdateRule, values: dict) -> UpdateRule:
    """``rule`` with its state initial values (``s₀ = initial_accumulator_value``) as numbers."""
    if not rule.init:
        return rule
    hyper = {s: float(values.get(s.name, d)) for s, d in rule.hyper.items()}
    return dataclasses.replace(rule, init={st: float(sp.sympify(e).xreplace(hyper)) for st, e in rule.init.items()})
