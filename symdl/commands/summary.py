"""The ``symdl summary`` subcommand: per-layer output shape, parameters and receptive field."""
from __future__ import annotations

import json

from .train import EPILOG, add_model_args, load_data, make_spec

__all__ = ["add_parser", "cmd_summary"]


def add_parser(sub):
    """Register ``summary`` on an argparse ``subparsers`` object; return its parser."""
    s = sub.add_parser("summary", help="per-layer output shape, parameters and receptive field",
                       description="Build the model the flags describe (as train would) and list "
                       "each layer's output shape, parameter count and receptive field, with "
                       "totals. Example: symdl summary --model cnn --channels 16,32",
                       epilog=EPILOG)
    add_model_args(s)
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(run=cmd_summary)
    return s


def cmd_summary(args) -> int:
    args.val_fraction = 0.0
    train, _val, _test, init_ss, _ = load_data(args)
    spec = make_spec(args, train, init_ss)
    result = spec.module.summary(("N", *train.X.shape[1:]))
    print(json.dumps(result.as_dict(), indent=1) if args.json else result)
    return 0
