"""A few cases against one stack, run as a user runs them (a pytest process
from the repository root, with an Allure directory): the stack's smoke set."""
import json
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(stack: str, select: str, tmp_path: Path, *args: str):
    """Run the cases `-k select` against `stack`; the run and its Allure
    results, each as (result, labels, parameters)."""
    results = tmp_path / "allure"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "conformance/", "--stack", stack,
                        "-k", select, "-q", f"--alluredir={results}", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    found = []
    for path in results.glob("*-result.json"):
        res = json.loads(path.read_text())
        found.append((res, {l["name"]: l["value"] for l in res["labels"]},
                      {p["name"]: p["value"].strip("'") for p in res.get("parameters", [])}))
    return r, found


def started(stack_class, family: str):
    """A stack of `stack_class` started for `family` (a fixture's body: yield
    from it), closed after."""
    from harness.stacks import StackConfig
    from harness.trace import Trace
    st = stack_class(StackConfig(family, Trace())).start()
    try:
        yield st
    finally:
        st.close()


def raw_request(stack, line: bytes) -> dict:
    """Send one raw request line to a stack's agent process and read its
    reply line (the protocol as bytes, not through App)."""
    import os
    import select
    import time
    os.write(stack.proc.stdin.fileno(), line + b"\n")
    out, deadline = b"", time.monotonic() + 5
    while not out.endswith(b"\n"):
        assert select.select([stack.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0], "no reply"
        out += os.read(stack.proc.stdout.fileno(), 65536)
    return json.loads(out)
