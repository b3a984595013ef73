"""packetdrill scripts against any stack under test.

Rules of this package:
- The language (lexer.py, parser.py -> ast.py) is pure and knows no stack:
  a script is parsed once into data, with packetdrill's own parse-time
  errors, and unit-tested without root.
- Running a script (runner.py) goes through the suite's own Stack, Link,
  Peer and Trace, with packetdrill's semantics for numbers, matching and
  time (packets.py holds the numbering and matching rules, pure); pytest
  collects `.pkt` files as items (plugin.py), so a script reports exactly
  like a Python case.
- What a stack cannot do skips the script, naming the construct and its
  line; nothing that was not checked passes.

`python -m harness.packetdrill DIR...` parses scripts and lists what each
needs that the interpreter or a stack lacks, without running anything.
"""
from .parser import ParseError, parse

__all__ = ["ParseError", "parse"]
