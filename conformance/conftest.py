"""The conformance suite: one module per area, one test per behaviour.

The fixtures (stack, peer, app, profile, tolerance) come from harness.plugin,
which pyproject.toml loads for every pytest run in this repository.
"""
import pytest

from harness.plugin import preflight, require_privileges


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    require_privileges(config)
    preflight(config)
