"""The GitHub workflow, run here as a runner runs it: every job in a fresh
clone of this repository, every `run:` step as written (only
`${{ matrix.stack }}` filled in) with bash -eo pipefail, in order, the
jobs of `needs` first and the others side by side:

- a job on `ubuntu-24.04` runs its steps as an unprivileged user with
  passwordless sudo (a runner's `runner`; created for the test, removed
  after), with Python 3.11 and Node.js 20 on PATH (setup-python and
  setup-node);
- a job in a `debian:12` container runs them as root (this machine is
  Debian 12, as the container is);
- checkout is a clone, upload-artifact and download-artifact copy
  directories as the actions lay them out, cache does nothing.

The suite steps run the four smoke cases of tests/readme.py (PYTEST_ADDOPTS,
kept through sudo): the steps are the workflow's, the cases few, so the
test costs minutes rather than three full suites; every step runs at nice
19, so that its set-ups and builds do not starve the project's timing tests
that run beside it. It asserts that each step
succeeds, that each stack's results come out, and that the report job
merges them into the report, the matrix and the step summary.
"""
import contextlib
import fnmatch
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from readme import SMOKE, fresh_clone
from test_workflow import WORKFLOW, load

pytestmark = [pytest.mark.root, pytest.mark.xdist_group("suite")]     # see conftest.SUITE_GROUP
RUNNER = "tcpconf-runner"
SUDOERS = Path("/etc/sudoers.d") / RUNNER
APT = threading.Lock()       # each container has apt of its own; the jobs here share this machine's


def _python311(path: str) -> bool:
    py = shutil.which("python3", path=path)
    return py is not None and subprocess.run([py, "-c", "import sys, venv; assert sys.version_info >= (3, 11)"],
                                             capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """An unprivileged user with passwordless sudo that keeps PYTEST_ADDOPTS."""
    from harness.setup import SetupError, apt_install
    if not _python311("/usr/bin:/bin"):
        pytest.skip("no Python 3.11 with venv in /usr/bin for an unprivileged user")
    try:
        apt_install(["sudo"], "the workflow test (a runner's passwordless sudo)")
    except SetupError as e:
        pytest.skip(str(e))
    home = Path(tempfile.mkdtemp(prefix="tcpconf-runner-"))
    subprocess.run(["userdel", "-r", RUNNER], capture_output=True)      # one a killed run left
    subprocess.run(["useradd", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group", RUNNER], check=True)
    try:
        entry = pwd.getpwnam(RUNNER)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        SUDOERS.write_text(f'{RUNNER} ALL=(ALL) NOPASSWD: ALL\nDefaults:{RUNNER} env_keep += "PYTEST_ADDOPTS"\n')
        SUDOERS.chmod(0o440)
        yield entry
    finally:
        SUDOERS.unlink(missing_ok=True)
        subprocess.run(["userdel", RUNNER], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


class Job:
    """One job instance (one matrix value) in a clone of its own."""

    def __init__(self, name: str, spec: dict, matrix: dict, where: Path, runner, artifacts: dict):
        self.name, self.spec, self.matrix, self.runner, self.artifacts = name, spec, matrix, runner, artifacts
        self.container = spec.get("container")
        self.where = where
        self.work = where / "work"
        self.work.mkdir(parents=True)
        self.summary = where / "summary.md"
        self.summary.touch()
        self.log: list = []
        self.failed = False
        if not self.container:
            for p in (where, self.work, self.summary):
                os.chown(p, runner.pw_uid, runner.pw_gid)

    def expand(self, text: str) -> str:
        for key, value in self.matrix.items():
            text = text.replace(f"${{{{ matrix.{key} }}}}", value)
        return text

    def run(self) -> None:
        for step in self.spec["steps"]:
            if self.failed and step.get("if") != "always()":
                continue
            ok = self.uses(step) if "uses" in step else self.shell(self.expand(step["run"]))
            self.failed = self.failed or not ok

    def shell(self, command: str) -> bool:
        assert "${{" not in command, f"an expression the test does not fill in: {command}"
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CI": "true", "LANG": "C.UTF-8",
               "GITHUB_STEP_SUMMARY": str(self.summary), "PYTEST_ADDOPTS": SMOKE}
        if self.container:
            cmd, env["HOME"] = [], "/root"
        else:
            cmd, env["HOME"], env["USER"] = ["runuser", "-u", RUNNER, "--"], self.runner.pw_dir, RUNNER
        args = ["nice", "-n", "19", *cmd, "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command]
        for _ in range(10):
            with APT if "apt-get" in command else contextlib.nullcontext():
                r = subprocess.run(args, cwd=self.work, capture_output=True, text=True, timeout=900)
            if "Could not get lock" not in r.stderr:         # another user of this machine's apt
                break
            time.sleep(3)
        self.log.append((command, r.returncode, r.stdout[-3000:] + r.stderr[-3000:]))
        return r.returncode == 0

    def uses(self, step: dict) -> bool:
        action, args = step["uses"].split("@")[0], {k: self.expand(str(v)) for k, v in (step.get("with") or {}).items()}
        if action == "actions/checkout":
            shutil.rmtree(self.work)
            self.work = fresh_clone(self.where)
            if not self.container:
                subprocess.run(["chown", "-R", f"{RUNNER}:{RUNNER}", str(self.work)], check=True)
        elif action == "actions/setup-python":
            assert _python311("/usr/bin:/bin") and args["python-version"] == "3.11"
        elif action == "actions/setup-node":
            out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
            assert int(out.lstrip("v").split(".")[0]) >= int(args["node-version"])
        elif action == "actions/upload-artifact":
            paths = [self.work / p for p in args["path"].split()]
            found = [p for p in paths if p.exists()]
            if found:
                base = Path(os.path.commonpath([p.parent if p.is_file() else p for p in found]))
                base = base if len(found) > 1 or found[0].is_file() else found[0].parent
                store = self.artifacts.setdefault(args["name"], self.where / "artifact" / args["name"])
                for p in found:
                    dest = store / p.relative_to(base)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if p.is_dir() else shutil.copy)(p, dest)
        elif action == "actions/download-artifact":
            for name, store in self.artifacts.items():
                if fnmatch.fnmatch(name, args["pattern"]):
                    shutil.copytree(store, self.work / args["path"] / name)
            if not self.container:
                subprocess.run(["chown", "-R", f"{RUNNER}:{RUNNER}", str(self.work)], check=True)
        elif action != "actions/cache":
            raise AssertionError(f"an action the test does not know: {step['uses']}")
        return True


def _instances(name: str, spec: dict) -> list:
    matrix = (spec.get("strategy") or {}).get("matrix") or {}
    if not matrix:
        return [(name, {})]
    (key, values), = matrix.items()
    return [(f"{name} ({v})", {key: v}) for v in values]


@pytest.fixture
def workdirs():
    """Where the jobs' clones live: a directory the runner user can reach
    (pytest's tmp_path is root's alone)."""
    where = Path(tempfile.mkdtemp(prefix="tcpconf-workflow-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_every_job_runs_as_on_a_runner(runner, workdirs):
    tmp_path = workdirs
    doc = load(WORKFLOW.read_text())
    if any((job.get("container") or {}).get("image") not in (None, "debian:12") for job in doc["jobs"].values()):
        pytest.fail("a container the test cannot stand in for")
    if "Debian GNU/Linux 12" not in Path("/etc/os-release").read_text():
        pytest.skip("the Debian 12 container's steps run on this machine, which is not Debian 12")
    artifacts, done, jobs = {}, set(), {}
    pending = dict(doc["jobs"])
    while pending:
        ready = [n for n, j in pending.items() if set(j.get("needs") or []) <= done]
        assert ready, f"needs that no job satisfies: {pending}"
        batch = [Job(title, pending[n], m, tmp_path / title.replace(" ", "_"), runner, artifacts)
                 for n in ready for title, m in _instances(n, pending[n])]
        threads = [threading.Thread(target=j.run) for j in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for j in batch:
            jobs[j.name] = j
        for n in ready:
            done.add(n)
            del pending[n]
    for job in jobs.values():
        failed = [(cmd, rc, out) for cmd, rc, out in job.log if rc != 0]
        assert not failed, f"{job.name}: {failed[0][0]} exited {failed[0][1]}\n{failed[0][2]}"
    stacks = ["linux", *doc["jobs"]["userspace"]["strategy"]["matrix"]["stack"]]
    assert set(artifacts) == {*(f"allure-results-{s}" for s in stacks), "conformance-report"}, sorted(artifacts)
    for stack in stacks:
        results = list((artifacts[f"allure-results-{stack}"] / "allure-results").glob("*-result.json"))
        assert len(results) == 4, (stack, len(results))
        assert (artifacts[f"allure-results-{stack}"] / "junit.xml").is_file()
    report = artifacts["conformance-report"]
    for page in ("html/index.html", "claims.md", "states.md", "coverage.md"):
        assert (report / page).is_file(), page
    matrix = (report / "matrix.md").read_text()
    assert all(stack in matrix for stack in stacks), matrix[:2000]
    assert jobs["report"].summary.read_text().startswith(matrix[:200])
