"""`python -m harness.packetdrill DIR...`: parse packetdrill scripts and say,
without running anything, which ones this interpreter can run against the
Linux agent and, for the others, the construct and line that stop them.

Rules of this file:
- Nothing is started: no namespace, no stack, no root needed. The check is
  the runner's own precheck, against the operations, socket options and
  message flags of harness.agent's SocketHost (what `--stack linux` and a
  remote Linux host offer); a stack with less skips more when it runs.
- Shell commands count as they would by default (`--pkt-commands=sysctl`:
  only sysctl settings run).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from ..agent import SocketHost
from .parser import ParseError
from .plugin import load_script, script_families
from .runner import Runner, Unsupported


def check(path: Path, defines: dict, commands: str) -> tuple[str, str]:
    """("ok" | "parse error" | "unsupported", detail) for one script."""
    script, cfg, error = load_script(path.read_text(errors="replace"), path.name,
                                     [("define", f"{k}={v}", 0) for k, v in defines.items()])
    if isinstance(error, ParseError):
        return "parse error", f"line {error.line}: {error.reason}"
    if isinstance(error, Unsupported):
        return "unsupported", error.construct
    families = script_families(path, cfg, "both")
    if not families:
        return "unsupported", "no family left to run it in"
    stack = SimpleNamespace(name="linux", mtu=0, family=families[0], app=None, link=None, trace=None)
    r = Runner(script, stack, cfg, path=path.name, rng=None, commands=commands,
               set_tunable=lambda key, value, check=False: None, set_mtu=lambda mtu: None)
    r.hello = SocketHost().op_hello()
    try:
        r.precheck()
    except Unsupported as e:
        return "unsupported", f"line {e.line}: {e.construct}"
    return "ok", ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.packetdrill", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="scripts, or directories searched for *.pkt")
    ap.add_argument("-D", "--define", action="append", default=[], metavar="SYM=VAL",
                    help="as packetdrill's -D (e.g. -D CODE=host_unreachable)")
    ap.add_argument("--pkt-commands", choices=("sysctl", "ignore", "run"), default="sysctl")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per script")
    a = ap.parse_args(argv)
    defines = dict(d.partition("=")[::2] for d in a.define)
    files = sorted({f for p in a.paths for f in ([p] if p.is_file() else p.rglob("*.pkt"))})
    if not files:
        print("no .pkt files found", file=sys.stderr)
        return 2
    outcomes = Counter()
    reasons = Counter()
    for f in files:
        kind, detail = check(f, defines, a.pkt_commands)
        outcomes[kind] += 1
        if kind != "ok":
            why = detail.split(": ", 1)[-1] if kind == "unsupported" else "see -v"
            reasons[f"{kind}: {re.sub(r'`[^`]*`', '`...`', why)}"] += 1
        if a.verbose or kind == "parse error":
            print(f"{f}: {kind}{': ' + detail if detail else ''}")
    print(f"{len(files)} scripts: {outcomes['ok']} runnable, {outcomes['unsupported']} need what is not "
          f"supported, {outcomes['parse error']} do not parse")
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")
    return 1 if outcomes["parse error"] else 0


if __name__ == "__main__":
    sys.exit(main())
