"""``symdl train --augment SPEC`` and ``--ensemble K``: data augmentation and bagging.

:func:`add_augment_ensemble_args` adds the two flags to ``train``'s parser;
:func:`augmented` replaces the training split by its augmented version;
:func:`run_ensemble` trains ``K`` members on bootstrap resamples and reports
each member's and the averaged ensemble's test accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import UsageError

__all__ = ["add_augment_ensemble_args", "augmented", "run_ensemble"]


def _members(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ensemble takes a whole number, got {text!r}") from None
    if not 1 <= k <= 100:
        raise argparse.ArgumentTypeError(f"--ensemble takes 1 to 100 members, got {k}")
    return k


def add_augment_ensemble_args(p: argparse.ArgumentParser) -> None:
    """Add ``--augment`` and ``--ensemble`` to a ``train`` parser."""
    p.add_argument("--augment", nargs="?", const="default", default=None, metavar="k=v,...",
                   help="add transformed copies of the training images (square images such as "
                   "the 8x8 digits): copies=4,shift=1,degrees=10,noise=0.0 are the defaults; "
                   "seeded by --seed")
    p.add_argument("--ensemble", type=_members, default=1, metavar="K",
                   help="bagging: train K models, each on a bootstrap resample of the training "
                   "split, and average their predicted probabilities (default: 1, no ensemble)")


def augmented(args, train):
    """``train`` augmented as ``--augment`` asks (unchanged without the flag)."""
    spec = getattr(args, "augment", None)
    if spec is None:
        return train
    import numpy as np
    from ..data.augment import augment, parse_augment
    parsed = parse_augment(spec)
    if getattr(train, "task", "classification") != "classification":
        raise UsageError("--augment keeps labels of images: it needs a classification data set")
    # its own stream (seed, 1): the model's initialisation and data order stay as without it
    out = augment(train, parsed, np.random.default_rng(np.random.SeedSequence([args.seed, 1])))
    if not getattr(args, "json", False):
        print(f"augmented: {len(train)} -> {len(out)} training examples ({parsed.describe()})",
              file=sys.stderr)
    return out


def run_ensemble(args, train, val, test, init_ss, make_spec, optimizer) -> int:
    """Train ``args.ensemble`` members by bagging; print (or ``--json``) the accuracies."""
    import numpy as np
    from ..train import Trainer
    from ..train.ensemble import bagging
    # one run's options: with K members they would be ignored, and an ignored flag is an error
    single = [f"--{k}" for k in ("checkpoint", "save", "plot", "distributed", "ranks")
              if getattr(args, k, None)]
    if str(getattr(args, "resume", "auto")) not in ("auto", "never"):  # auto: no-op here
        single.append("--resume")
    if single:
        raise UsageError(f"--ensemble trains several models: {', '.join(single)} "
                         f"{'is' if len(single) == 1 else 'are'} not supported with it")
    if getattr(train, "task", "classification") != "classification":
        raise UsageError("--ensemble averages class probabilities: it needs a classification "
                         "data set")
    t0 = time.perf_counter()

    def member(i, ss):
        init, order = ss.spawn(2)
        spec = make_spec(args, train, init)
        return Trainer(spec.module, optimizer(args), spec.loss, spec.loss_params,
                       args.batch_size, args.epochs, order, False, args.dtype,
                       on_nonfinite=args.on_nonfinite, max_skips=args.max_skips,
                       l1=args.l1, l2=args.l2, clip_norm=args.clip_norm,
                       clip_value=args.clip_value, input_noise=args.input_noise)

    ens = bagging(member, train, args.ensemble, np.random.SeedSequence([args.seed, 2]), val)
    accs, acc = ens.member_accuracies(test), ens.accuracy(test)
    seconds = time.perf_counter() - t0
    if getattr(args, "json", False):
        print(json.dumps({"model": args.model, "dataset": args.dataset, "members": args.ensemble,
                          "seed": args.seed, "member_test_accuracy": accs,
                          "ensemble_test_accuracy": acc, "seconds": seconds}, indent=1))
        return 0
    for i, a in enumerate(accs):
        print(f"member {i + 1:>2}  test accuracy {a:.2%}")
    print(f"ensemble of {args.ensemble} (bagging, averaged probabilities): test accuracy "
          f"{acc:.2%} (members' mean {np.mean(accs):.2%}) in {seconds:.1f} s")
    return 0
