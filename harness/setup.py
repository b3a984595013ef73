"""Set up this checkout on a fresh machine: `python3 -m harness.setup`.

Rules of this file:
- Standard library only: it runs with the system Python before anything is
  installed. It is idempotent: a second run checks and does nothing new.
- It creates `.venv` with the project installed (editable), and, when asked,
  what optional parts need (`--report`: Allure 3 from npm for the HTML
  report; `--stack NAME`: the packages and agent builds a stack needs).
- A missing tool is one line saying what to install; the exit is non-zero.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


class SetupError(RuntimeError):
    pass


def run(cmd: list, **kw) -> None:
    try:
        subprocess.run(cmd, check=True, **kw)
    except FileNotFoundError:
        raise SetupError(f"{cmd[0]} is not installed: install it and run python3 -m harness.setup again") from None
    except subprocess.CalledProcessError as e:
        raise SetupError(f"{' '.join(map(str, cmd))} failed (exit {e.returncode})") from None


def python_env() -> None:
    if sys.version_info < (3, 11):
        raise SetupError(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]})")
    if not PY.exists():
        print("setup: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".tcpconf-installed"
    pyproject = ROOT / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    print("setup: installing the project and its dependencies into .venv", flush=True)
    run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", str(ROOT)])
    stamp.touch()


def report_tools() -> None:
    """Allure 3 (npm, no Java) for `python -m harness.report`."""
    if shutil.which("npm") is None:
        raise SetupError("npm is not installed: install Node.js 20+ (apt-get install nodejs npm) for the HTML report")
    reports = ROOT / "reports"
    if (reports / "node_modules" / ".bin" / "allure").exists():
        return
    print("setup: installing Allure 3 into reports/node_modules (npm ci)", flush=True)
    run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=reports)


def stack_tools(name: str) -> None:
    if name == "linux":
        return
    # The stack's setup() runs in .venv (harness.stacks needs scapy); its
    # StackError (an unknown name, a missing tool) is the one line the user sees.
    code = (f"import sys, harness.stacks as s\n"
            f"try:\n    s.stack_class({name!r}).setup()\n"
            f"except s.StackError as e:\n    sys.exit(f'setup: {{e}}')\n")
    if subprocess.run([str(PY), "-c", code], cwd=ROOT).returncode != 0:
        raise SetupError("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness.setup",
                                description="Set up this checkout: .venv, and optional report and stack tools.")
    p.add_argument("--report", action="store_true", help="also install Allure 3 (npm) for the HTML report")
    p.add_argument("--stack", action="append", default=[], metavar="NAME",
                   help="also install and build what stack NAME needs (repeatable)")
    a = p.parse_args(argv)
    try:
        python_env()
        if a.report:
            report_tools()
        for name in a.stack:
            stack_tools(name)
    except SetupError as e:
        if str(e):
            print(f"setup: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"setup: {e}", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("setup: done; the conformance suite needs root (network namespaces): sudo .venv/bin/pytest conformance/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
