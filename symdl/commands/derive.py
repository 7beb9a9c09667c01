"""The ``symdl derive`` subcommand: a step-by-step derivative of one expression.

The main CLI calls :func:`add_parser` on its subparsers (which sets
``args.run``) and calls ``args.run(args)``.  Errors are raised, not printed: a
:class:`~symdl.derive.parse.ParseError` or other :class:`~symdl.errors.UsageError`
(exit code 2).  A parse error's ``cli_detail`` (also :func:`format_error`) is
the expression with a caret under the offending column.
"""
from __future__ import annotations

import argparse
import sys

import sympy as sp

from ..derive.budget import TIME_LIMIT
from ..derive.parse import CONSTANTS, ParseError, format_caret, parse
from ..derive.steps import derive
from ..errors import UsageError
from .pictures import add_derive_plot_args, save_derivative_plot, save_schedule_plot

__all__ = ["add_parser", "run", "format_error", "FORMATS"]

FORMATS = ("text", "latex", "markdown", "json")

_DESCRIPTION = """\
Differentiate EXPR step by step, naming the rule used at each step (sum, product,
quotient, power, chain, exp, log, trig, piecewise, known op, ...) and checking
every step with SymPy.

EXPR is Python syntax: numbers, names, + - * / ** and calls of
  exp log ln sqrt cbrt abs erf max min, log(x, base), root(x, n),
  sin cos tan cot sec csc, asin acos atan acot asec acsc,
  sinh cosh tanh coth sech csch, asinh acosh atanh acoth
and of symdl's ops: sigmoid softplus relu leaky_relu(x, alpha) elu gelu silu ...
Every other name is a real variable (beta1, gamma, lambda, E, N); pi and e are
the constants. Nothing in EXPR is ever executed.
"""
_EPILOG = """\
examples:
  symdl derive "1/(1+exp(-z))"
  symdl derive "sigmoid(z)" --format latex
  symdl derive "log(1+exp(x))" --format markdown
  symdl derive "(exp(z)-exp(-z))/(exp(z)+exp(-z))" --steps brief
  symdl derive "log(x, 2)"          (log with a base; also asin, acot, sec, ...)
  symdl derive "(x - t)**2" --wrt x --format json
  symdl derive -- "-x**2"          (-- before an expression that starts with -)
  symdl derive --optimizer adam    (an optimizer's update rule, as declared)
  symdl derive --schedule "cosine:T_max=50" --format latex
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``derive`` on an argparse ``subparsers`` object; return its parser."""
    p = subparsers.add_parser(
        "derive", help="differentiate an expression step by step",
        description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("expr", metavar="EXPR", nargs="?", help='the expression, e.g. "x**2 * sigmoid(x)"')
    p.add_argument("--optimizer", metavar="NAME",
                   help="instead: print an optimizer's update rule (sgd, adam, adamw, rmsprop, ...)")
    p.add_argument("--schedule", metavar="NAME[:k=v,...]",
                   help="instead: print a learning-rate schedule (step, cosine, cyclic, ...)")
    p.add_argument("--wrt", metavar="VAR",
                   help="the variable to differentiate by (needed only when EXPR has several)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="output format (default: text)")
    p.add_argument("--steps", choices=("full", "brief"), default="full",
                   help="full: every rule; brief: the rules folded into one line, then the "
                   "rewrites to the textbook form (default: full)")
    p.add_argument("--time-limit", metavar="S", type=float, default=TIME_LIMIT,
                   help=f"give up (exit 2) after S seconds (default: {TIME_LIMIT:g})")
    add_derive_plot_args(p)  # --plot FILE, --plot-domain LO,HI
    p.set_defaults(run=run)
    _hint_dashed_expression(p)
    return p


def _hint_dashed_expression(p: argparse.ArgumentParser) -> None:
    """argparse reads an EXPR starting with '-' as an unknown option; say to put -- first."""
    parse_known = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = parse_known(args, namespace)
        dashed = [a for a in extra if a.startswith("-") and not a.startswith("--")]
        if dashed and getattr(ns, "expr", None) is None:
            p.error(f"an expression starting with '-' needs -- before it: "
                    f"symdl derive -- \"{dashed[0]}\"")
        return ns, extra

    p.parse_known_args = parse_known_args


def run(args: argparse.Namespace) -> int:
    """Print the derivation of ``args.expr`` on stdout; 0 on success.

    Raises
    ------
    ParseError
        EXPR is not an allowed expression (exit code 2).
    UsageError
        ``--wrt`` is missing although EXPR has several variables, or is not a name;
        or the derivation took longer than ``--time-limit`` seconds or grew too large;
        or its result could not be verified against SymPy's diff (printed, then exit 2).
    """
    if args.optimizer or args.schedule:
        return _rules(args)
    if args.expr is None:
        raise UsageError("give an expression, --optimizer NAME or --schedule NAME")
    expr = parse(args.expr)
    wrt = None
    if args.wrt is not None:
        wrt = _variable(args.wrt)
    limit = getattr(args, "time_limit", TIME_LIMIT)
    if not limit > 0:  # also NaN
        raise UsageError(f"--time-limit must be a positive number of seconds, not {limit}")
    dv = derive(expr, wrt, time_limit=None if limit == float("inf") else limit)
    shown = dv.brief() if getattr(args, "steps", "full") == "brief" else dv
    text = shown.render(args.format)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    save_derivative_plot(args, expr, dv)  # --plot FILE: f and f'
    if not dv.verified:  # shown, marked, and never exit 0: 0 means checked against SymPy
        raise UsageError("the result above could not be verified against SymPy's diff (is the "
                         "expression undefined at most points?)")
    return 0


def _rules(args) -> int:
    from ..optim.derivation import rule_latex, rule_text, schedule_latex, schedule_text
    latex = args.format == "latex"
    save_schedule_plot(args)  # --plot FILE: the schedule's learning rate
    if args.format == "json":  # one document, each rule as text and LaTeX
        import json
        doc = {}
        if args.optimizer:
            name = args.optimizer.lower()
            doc["optimizer"] = {"name": name, "text": rule_text(name), "latex": rule_latex(name)}
        if args.schedule:
            doc["schedule"] = {"spec": args.schedule, "text": schedule_text(args.schedule),
                               "latex": schedule_latex(args.schedule)}
        sys.stdout.write(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        return 0
    parts = []
    if args.optimizer:
        parts.append((rule_latex if latex else rule_text)(args.optimizer.lower()))
    if args.schedule:
        parts.append((schedule_latex if latex else schedule_text)(args.schedule))
    sys.stdout.write("\n".join(p if p.endswith("\n") else p + "\n" for p in parts))
    return 0


def _variable(name: str) -> sp.Symbol:
    try:
        sym = parse(name)
    except ParseError:
        sym = None
    if not isinstance(sym, sp.Symbol):
        why = f"the constant {name.strip()}" if name.strip() in CONSTANTS else repr(name)
        raise UsageError(f"--wrt needs a variable name, not {why}")
    return sym


def format_error(exc: BaseException, text: str | None = None) -> str:
    """The error's message and, for a parse error, the expression with a caret.

    ``text`` defaults to the expression the error carries.

    Examples
    --------
    >>> try:
    ...     parse("x.y")
    ... except ParseError as exc:
    ...     print(format_error(exc))
    attribute access is not allowed (column 3)
      x.y
        ^
    """
    message = str(exc)
    if isinstance(exc, ParseError):
        text = exc.text if text is None else text
        if text is not None:
            return f"{message}\n{format_caret(text, exc.column)}"
    return message
