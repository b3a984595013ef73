"""Every README command, as written, on a fresh clone (tests/readme.py): the
install steps a user is told to run are enough. Conformance runs are
narrowed to four smoke cases through PYTEST_ADDOPTS; the commands are not
changed. A README command that no test runs fails
`test_every_readme_command_is_run_by_a_test`."""
import ast

import pytest
from hosts import sut_and_tester
from readme import ROOT, SMOKE, ci_command, commands, fresh_clone, run_readme, start_readme

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("suite")]     # see conftest.SUITE_GROUP
SMOKE_ENV = {"PYTEST_ADDOPTS": SMOKE}


# --- the check ----------------------------------------------------------------------------------

def covered(sources) -> set:
    """The README commands the test files `sources` run: string literals given
    to run_readme or start_readme."""
    out = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("run_readme", "start_readme")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                out.add(node.args[0].value)
    return out


def uncovered(readme_commands, sources) -> list:
    runs = covered(sources) | {ci_command()}
    return [c for c in readme_commands if c not in runs]


def test_every_readme_command_is_run_by_a_test():
    sources = [p.read_text() for p in sorted((ROOT / "tests").glob("*.py"))]
    missing = uncovered(commands(), sources)
    assert not missing, f"README commands no test runs (tests/readme.py run_readme): {missing}"


def test_the_check_catches_a_command_no_test_runs():
    text = (ROOT / "README.md").read_text() + "\n```sh\npython3 -m harness.newtool --flag   # explained\n```\n"
    sources = [p.read_text() for p in sorted((ROOT / "tests").glob("*.py"))]
    assert uncovered(commands(text), sources) == ["python3 -m harness.newtool --flag"]
    assert "python3 -m harness.newtool --flag" not in commands()


def test_readme_commands_are_read_as_a_user_copies_them():
    text = "x\n```sh\n# a comment\na --b \\\n    c   # why\n\nd # e\n```\n```python\nnot = 'sh'\n```\n"
    assert commands(text) == ["a --b c", "d"]
    assert ci_command() in commands(), ".ci/run runs the README's test command"


# --- the commands, on fresh clones --------------------------------------------------------------

def _ok(r, what: str, summary: str = "4 passed"):
    assert r.returncode == 0, f"{what}: exit {r.returncode}\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"
    assert summary in r.stdout, r.stdout[-2500:]


def test_the_suite_and_its_report(tmp_path):
    clone = fresh_clone(tmp_path)
    r = run_readme("python3 -m harness.setup --report && .venv/bin/pytest conformance/ -n 12 "
                   "--alluredir=reports/allure-results --junitxml=reports/junit.xml; .venv/bin/python -m harness.report",
                   clone, SMOKE_ENV)
    _ok(r, "the first README command")
    for page in ("html/index.html", "matrix.html", "matrix.md", "states.html", "claims.html", "coverage.html", "junit.xml"):
        assert (clone / "reports" / page).is_file(), page


def test_lwip(tmp_path):
    _ok(run_readme("python3 -m harness.setup --stack lwip && .venv/bin/pytest conformance/ --stack lwip -n 4",
                   fresh_clone(tmp_path), SMOKE_ENV), "lwIP")


def test_gvisor(tmp_path):
    _ok(run_readme("python3 -m harness.setup --stack gvisor && .venv/bin/pytest conformance/ --stack gvisor -n 4",
                   fresh_clone(tmp_path), SMOKE_ENV), "gVisor")


def test_user_mode_linux(tmp_path):
    from harness.uml import Uml
    if Uml.binary() is None:
        pytest.skip("user-mode Linux is not installed (python3 -m harness.setup --uml)")
    clone = fresh_clone(tmp_path)
    r = run_readme("python3 -m harness.setup --uml", clone)
    assert r.returncode == 0, r.stderr[-2000:]
    _ok(run_readme('.venv/bin/python -m harness.uml -- .venv/bin/pytest conformance/ -m "not slow and not matrix"', clone,
                   SMOKE_ENV, nice=0), "UML")                  # UML boots within 30 s


def test_slirp(tmp_path):
    _ok(run_readme("python3 -m harness.setup --stack slirp && .venv/bin/pytest conformance/ --stack slirp -n 4",
                   fresh_clone(tmp_path), SMOKE_ENV), "slirp")


def test_passt(tmp_path):
    """passt drops the data on the handshake's last ACK and answers a SYN to a
    closed port with a RST without ACK: both smoke cases are documented
    deviations there."""
    _ok(run_readme("python3 -m harness.setup --stack passt && .venv/bin/pytest conformance/ --stack passt -n 4",
                   fresh_clone(tmp_path), SMOKE_ENV), "passt", "4 xfailed")


def test_packetdrill_scripts_against_lwip(tmp_path):
    """As the README says: every script runs to a verdict; the one lwIP
    departs from fails on its line, both families."""
    r = run_readme("python3 -m harness.setup --stack lwip && .venv/bin/pytest -c pyproject.toml --rootdir . "
                   "tests/packetdrill/cases/ --stack lwip -n 4", fresh_clone(tmp_path), {"PYTEST_ADDOPTS": "-p no:randomly"})
    assert r.returncode == 1 and "2 failed, 12 passed, 2 skipped" in r.stdout, r.stdout[-2500:]
    failed = {line.split("::")[0] for line in r.stdout.splitlines() if line.startswith("FAILED ")}
    assert failed == {"FAILED tests/packetdrill/cases/synack-acking-unsent.pkt"}, failed


def test_a_remote_host(tmp_path):
    """The README's two hosts: the SUT namespace holds 198.18.0.1 and
    2001:2::1 (offloads off, as the README asks) and runs the agent; the
    tester's namespace has `eth1` towards it, with an address of its own
    (198.18.0.3) to reach the agent, and claims 198.18.0.2 / 2001:2::2."""
    clone = fresh_clone(tmp_path)
    with sut_and_tester("eth0", "eth1", tester_address="198.18.0.3") as (sut, tester):
        agent = start_readme("python3 -m harness.agent --listen 198.18.0.1:7070", clone, netns=sut.name)
        try:
            assert "listening" in agent.stderr.readline()
            setup = run_readme("python3 -m harness.setup", clone)          # the tester host's set-up, with its network
            assert setup.returncode == 0, setup.stderr[-2000:]
            r = run_readme(".venv/bin/pytest conformance/ --stack remote --stack-opt iface=eth1 "
                           "--stack-opt address=198.18.0.1,2001:2::1 --stack-opt tester-address=198.18.0.2,2001:2::2 "
                           "--stack-opt agent=198.18.0.1:7070 --stack-opt profile=linux", clone, SMOKE_ENV,
                           netns=tester.name)
            _ok(r, "the remote host's command")
        finally:
            agent.kill()
            agent.wait()
            agent.stdout.close()
            agent.stderr.close()
