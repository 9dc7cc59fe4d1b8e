"""cli_args.py: numeric options are parsed strictly by every command (cmd/cli.c st_cli_*_option),
through the binary as a user types them. A value that is not wholly a number in range ("8x", "",
" 8", "-1" for a seed, "nan") exits 2 with `simtune CMD: OPTION 'VALUE' ...` on stderr, never a
signal; a good value gets past the option (the run then stops at a later, named problem)."""
import subprocess
import sys

import testlib
from testlib import BIN, FAILURES, check

testlib.inputs()

# (command line, the option and value the error must name)
BAD = [
    (["bench", "train", "--batch", "8x"], "--batch '8x'"),
    (["bench", "train", "--steps", ""], "--steps ''"),
    (["bench", "infer", "--image-size", " 224"], "--image-size ' 224'"),
    (["bench", "data", "--data", "x", "--batch", "8x"], "--batch '8x'"),
    (["train", "--resume", "x", "--epochs", "3.5"], "--epochs '3.5'"),
    (["demo", "--threads", "two"], "--threads 'two'"),
    (["sweep", "--config", "x.yaml", "--seed", "-1"], "--seed '-1'"),
    (["embed", "--batch", "99999999999"], "--batch '99999999999'"),
    (["embed", "--gem-p", "3x"], "--gem-p '3x'"),
    (["topk", "-k", "1e3"], "-k '1e3'"),
    (["topk", "--tile-rows", "-4"], "--tile-rows '-4'"),
    (["search", "--threads", "0x10"], "--threads '0x10'"),
    (["eval", "--query-fraction", "nan"], "--query-fraction 'nan'"),
    (["eval", "--seed", "-1"], "--seed '-1'"),
]

# A good number, then a later problem the command names: the number itself was accepted.
GOOD = [
    (["bench", "train", "--batch", "8", "--loss", "hinge"], "--loss"),
    (["bench", "data", "--batch", "8", "--data", "no/such/dataset"], "no/such/dataset"),
]


def run(args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)


def main():
    for args, named in BAD:
        p = run(args)
        cmd = "bench data" if args[:2] == ["bench", "data"] else args[0]  # `bench data` has its own parser
        check(p.returncode == 2 and f"simtune {cmd}: {named}" in p.stderr,
              f"simtune {args!r}: exit {p.returncode} (want 2), stderr {p.stderr.strip()!r} "
              f"(want 'simtune {cmd}: {named}')")
    for args, named in GOOD:
        p = run(args)
        check(p.returncode > 0 and named in p.stderr and "--batch" not in p.stderr,
              f"simtune {args!r}: exit {p.returncode}, stderr {p.stderr.strip()!r} (want {named!r})")
    return testlib.finish("cli_args", note=f"{len(BAD) + len(GOOD) - len(FAILURES)}/{len(BAD) + len(GOOD)} ok")


if __name__ == "__main__":
    sys.exit(main())
