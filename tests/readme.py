"""The README's commands, as a user copies them: read from its ```sh blocks
and run, as written, in fresh clones of this repository.

Rules of this file:
- A README command is a line of a ```sh block without its comment, a
  line ending in `\\` joined with the next. `commands()` lists them.
- `run_readme(command, clone)` refuses a command the README does not have,
  word for word, and runs it with bash in `clone`, as root, in the
  environment of the test (PATH: the Python 3.11 a user has), optionally
  in a network namespace. A test narrows what a conformance run selects
  through PYTEST_ADDOPTS (the command stays as written); the install steps
  and the invocation are what is exercised.
- tests/test_readme.py checks that every README command is run by some
  test through `run_readme` (a string literal there), or is the CI command
  (.ci/run), so that a README command no test covers fails the project's
  own tests.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cases a README command runs when a test narrows it: 4 tests, well under a
# second, none racing a timer of the SUT's (a tester slowed down by the rest of
# the project's tests must not fail them).
SMOKE = '-p no:randomly -k "test_data_on_third_ack_is_delivered or test_syn_to_closed_port"'


def _uncomment(line: str) -> str:
    m = re.search(r"(^|\s)#", line)
    return (line[:m.start()] if m else line).rstrip()


def commands(text: str | None = None) -> list[str]:
    text = (ROOT / "README.md").read_text() if text is None else text
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            line = _uncomment(line)
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            line = (pending + line.strip()).strip()
            pending = ""
            if line:
                out.append(line)
    return out


def ci_command() -> str:
    """The command .ci/run runs (its last line)."""
    return [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.strip()][-1].strip()


def fresh_clone(where: Path) -> Path:
    """A clone of this repository's HEAD, as `git clone` gives a new user."""
    clone = where / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def _popen_args(command: str, clone: Path, env: dict | None, netns: str | None, nice: int) -> dict:
    if command not in commands():
        raise AssertionError(f"not a README command, word for word: {command!r}")

    def preexec():
        os.nice(nice)
        if netns is not None:
            from pyroute2 import netns as p2
            p2.setns(netns)
    return {"args": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command], "cwd": clone,
            "env": {**os.environ, **(env or {})}, "preexec_fn": preexec, "text": True}


def run_readme(command: str, clone: Path, env: dict | None = None, netns: str | None = None,
               timeout: float = 900, nice: int = 19) -> subprocess.CompletedProcess:
    """Run a README command as written in `clone` (and namespace `netns`), at
    a low CPU priority by default: set-ups compile and install, and the
    project's timing tests run beside them on two cores."""
    kw = _popen_args(command, clone, env, netns, nice)
    return subprocess.run(kw.pop("args"), capture_output=True, timeout=timeout, **kw)


def start_readme(command: str, clone: Path, env: dict | None = None, netns: str | None = None,
                 nice: int = 0) -> subprocess.Popen:
    """Start a README command that serves until stopped (an agent)."""
    kw = _popen_args(command, clone, env, netns, nice)
    return subprocess.Popen(kw.pop("args"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
