"""Cold start: wall time of ``symdl train --epochs 0`` (a fresh process, warm kernel cache).

Issue 10 asks for under 2 s.  Runs the command ``--runs`` times after one warm-up run
(which fills the kernel cache), each in a fresh process, and prints the median and the
range; then where the time goes, measured in one more process: the imports of NumPy,
SymPy, networkx, numba and symdl, the command itself (numba's first cached kernel
initialises its registries), and the interpreter's exit.  The timed processes run without
``PYTHONDONTWRITEBYTECODE`` (Python's default: compiled modules are cached).  Progress on stderr.
Run: ``python benchmarks/cold_start.py [--runs 7] [--command "symdl train --epochs 0"]``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = r"""
import sys, time
w0 = time.perf_counter(); marks = []
def mark(n): marks.append((n, time.perf_counter()))
import numpy; mark("numpy")
import sympy; mark("sympy")
import networkx; mark("networkx")
import numba; mark("numba")
import symdl.ops; mark("symdl ops (SymPy declarations)")
import symdl.train, symdl.commands.derive; mark("the rest of symdl")
from symdl.cli import main
main(sys.argv[1:]); mark("the command")
prev = w0
for n, t in marks:
    print(f"{n}\t{t - prev:.3f}", file=sys.stderr); prev = t
print(f"main done\t{time.perf_counter() - w0:.3f}", file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--command", default="symdl train --epochs 0",
                    help="the command to time (default: %(default)s)")
    args = ap.parse_args()
    cmd = shlex.split(args.command)
    if cmd[0] == "symdl":
        # this interpreter's own script: a version manager's shim (pyenv's is a bash script
        # running `pyenv exec`) adds 0.1-0.3 s that is not symdl's
        own = shutil.which("symdl", path=str(Path(sys.executable).parent))
        cmd[0] = own or cmd[0]
        print(f"timing {' '.join(cmd)}", file=sys.stderr)
    # Python as users run it: with PYTHONDONTWRITEBYTECODE set (some sandboxes and CI images
    # set it) an editable install compiles every symdl module from source at each start
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, capture_output=True, check=True, env=env)  # warm the caches
    times = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("(PYTHONDONTWRITEBYTECODE is set here: left out of the timed processes, so that "
              "Python caches compiled modules as it does by default)")
    print(f"{args.command}: median {statistics.median(times):.2f} s over {args.runs} fresh "
          f"processes (min {min(times):.2f}, max {max(times):.2f}); goal < 2 s")
    if args.command.startswith("symdl "):  # where the time goes, in one more process
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", PHASES, *cmd[1:]], capture_output=True,
                           text=True, check=True, env=env)
        total = time.perf_counter() - t0
        rows = [line.split("\t") for line in r.stderr.splitlines() if "\t" in line]
        for name, sec in rows[:-1]:
            print(f"  {name:<32} {float(sec):.3f} s")
        done = float(rows[-1][1])
        print(f"  {'start-up and exit':<32} {total - done:.3f} s (of {total:.2f} s in all)")


if __name__ == "__main__":
    main()
