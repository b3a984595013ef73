"""Set up this checkout on a fresh machine: `python3 -m harness.setup`.

Rules of this file:
- Standard library only: it runs with the system Python before anything is
  installed. It is idempotent: a second run checks and does nothing new.
- It creates `.venv` with the project installed (editable), and, when asked,
  what optional parts need (`--report`: Allure 3 from npm for the HTML
  report, and Debian's Chromium and chromedriver with Selenium for the test
  that opens the pages in a browser; `--stack NAME`: the packages and agent
  builds a stack needs; `--uml`: user-mode Linux, a second kernel for
  `--stack remote`).
- A missing tool is one line saying what to install; the exit is non-zero.
- Debian packages are installed with apt-get as root, or through `sudo -n`
  for a user whose sudo needs no password (a CI runner): `.venv` and the
  builds stay the user's.
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


def package_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    if shutil.which("dpkg-query") is None:
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", package],
                       capture_output=True, text=True)
    status, _, version = r.stdout.partition(" ")
    return (version.strip() or None) if r.returncode == 0 and status.startswith("ii") else None


def as_root(cmd: list) -> list | None:
    """`cmd` as root: as it is for root, through `sudo -n` for a user whose
    sudo asks no password (a CI runner's), else None."""
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", *cmd]
    return None


def apt_install(packages, purpose: str) -> None:
    """Install the Debian `packages` that are missing (apt-get, as root or
    through passwordless sudo), for `purpose`; one line (SetupError) if
    they cannot be."""
    missing = [p for p in packages if package_version(p) is None]
    if not missing:
        return
    what = " ".join(missing)
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    install = as_root(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                       "--no-install-recommends", *lock, *missing])
    if shutil.which("apt-get") is None or install is None:
        raise SetupError(f"{purpose} needs Debian's {what}: as root (or with sudo), apt-get install {what}")
    print(f"setup: installing {what} (apt-get{'' if os.geteuid() == 0 else ', with sudo'}), for {purpose}",
          flush=True)
    r = subprocess.run(install, capture_output=True, text=True)
    if r.returncode != 0:                    # stale package lists: refresh once
        subprocess.run(as_root(["apt-get", "update", "-q", *lock]), capture_output=True)
        r = subprocess.run(install, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()
        raise SetupError(f"apt-get install {what} failed: {tail[-1] if tail else r.returncode}")


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
    """Allure 3 (npm, no Java) for `python -m harness.report`; Chromium,
    chromedriver and Selenium for tests/test_browser.py, which opens the
    pages as a reader would."""
    browser_tools()
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SetupError("npm is not installed: install Node.js 20+ (apt-get install nodejs npm) for the HTML report")
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0) if version.lstrip("v")[:1].isdigit() else 0
    if major < 20:
        raise SetupError(f"Node.js {version or '?'} is too old for Allure 3: install Node.js 20+")
    reports = ROOT / "reports"
    stamp = reports / "node_modules" / ".tcpconf-installed"
    if stamp.exists() and stamp.stat().st_mtime >= (reports / "package-lock.json").stat().st_mtime:
        return
    print("setup: installing Allure 3 into reports/node_modules (npm ci)", flush=True)
    run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=reports)
    stamp.touch()


def browser_tools() -> None:
    """Debian's chromium and chromium-driver (one version, both from Debian:
    nothing is downloaded at test time) and Selenium in .venv (the project's
    `report` extra). Without root the packages are one line saying what to
    install: the report itself does not need them."""
    try:
        apt_install(["chromium", "chromium-driver"], "the browser test of the reports (tests/test_browser.py)")
    except SetupError as e:
        print(f"setup: {e}", file=sys.stderr)
    stamp = VENV / ".tcpconf-report-installed"
    pyproject = ROOT / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    print("setup: installing Selenium into .venv (the report extra)", flush=True)
    run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", f"{ROOT}[report]"])
    stamp.touch()


def in_venv(call: str) -> None:
    """Run `call` (a set-up function of the project) in .venv, where harness's
    dependencies are; its StackError or SetupError is the one line shown."""
    code = (f"import sys, harness.stacks as s, harness.setup as u, harness.uml\n"
            f"try:\n    {call}\n"
            f"except (s.StackError, u.SetupError, harness.uml.UmlError) as e:\n    sys.exit(f'setup: {{e}}')\n")
    if subprocess.run([str(PY), "-c", code], cwd=ROOT).returncode != 0:
        raise SetupError("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness.setup",
                                description="Set up this checkout: .venv, and optional report and stack tools.")
    p.add_argument("--report", action="store_true", help="also install Allure 3 (npm) for the HTML report")
    p.add_argument("--stack", action="append", default=[], metavar="NAME",
                   help="also install and build what stack NAME needs (repeatable)")
    p.add_argument("--uml", action="store_true",
                   help="also install user-mode Linux (a second kernel for --stack remote: python -m harness.uml)")
    a = p.parse_args(argv)
    try:
        python_env()
        if a.report:
            report_tools()
        for name in a.stack:
            if name != "linux":
                in_venv(f"s.stack_class({name!r}).setup()")
        if a.uml:
            in_venv("harness.uml.setup()")
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
