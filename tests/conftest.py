"""The project's own tests: unit tests (no root), integration tests and
negative controls (root: they create namespaces)."""
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# Tests that run a whole quick suite and judge its timers (the quick run, a
# remote namespace, user-mode Linux) and those that set up fresh clones (the
# README's commands, the workflow's jobs) share the xdist group "suite":
# with `--dist loadgroup` one runs at a time, beside the light tests, so
# that a user-mode Linux guest, whose timers are host processes, is not
# starved by builds and other suites on two cores.
SUITE_GROUP = "suite"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces")
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (network namespaces)")


@pytest.fixture
def run_case(pytester):
    """Run conformance tests in-process, as `pytest conformance/...` would
    from the repository root, with extra plugins; returns the RunResult."""
    def run(*args, plugins=()):
        return pytester.runpytest_inprocess(
            "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-p", "no:xdist",
            *[str(ROOT / a) if a.startswith("conformance/") else a for a in args],
            plugins=list(plugins))
    return run
