"""tcpconf: a packet-level TCP conformance suite.

The flow of one case: conformance/test_*.py -> Peer (peer.py) -> Link
(link.py) -> Stack (stacks/), with the Trace (trace.py) beside it. See
README.md and ../shared/design.md.

This package's __init__ imports nothing: `python3 -m harness.setup` runs it
with the system Python before any dependency is installed.
"""
