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
