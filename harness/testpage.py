"""The top of a test's page in the Allure report: the verdict at a glance,
then what the case does, its pictures, the exchange.

Rules of this file:
- Pure: facts in (the case, its outcome, its checks, its figures, the
  exchange's pictures), one HTML string out, which the plugin gives Allure as
  the test's description. Allure shows it in a sandboxed frame and sanitises
  it: no scripts, no inline <svg> (pictures are data: images), and links do
  not leave the frame (the RFC links are Allure links of the test).
- The verdict box comes first and says, in words, what a reader needs: for a
  pass the checks made and the requirements they checked; for a failure
  expected beside seen; for a documented deviation the rule, what it
  requires, what the stack did, and why the stack does so.
- The exchange is drawn once here, abbreviated for a long one (KEEP
  connections); the attachments keep it whole.
"""
from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass, field

from .render import TAIL

KEEP = 40              # packets drawn on the page; a case of 200 handshakes shows its first and last few
LADDER_WIDTH = 112     # characters: the ladder fits the page at 1400 pixels without scrolling (12 px JetBrains Mono)
LISTED = 10            # checks named in a pass's box; all of them are steps under "Test body"

# name -> (colour of the box's edge, its background, the heading)
BOXES = {
    "passed": ("#16a34a", "#f0fdf4", "Passed"),
    "failed": ("#dc2626", "#fef2f2", "RFC violation"),
    "timing": ("#ea580c", "#fff7ed", "Timing tolerance exceeded"),
    "deviation": ("#b45309", "#fffbeb", "Documented deviation"),
    "skipped": ("#64748b", "#f8fafc", "Skipped"),
    "error": ("#7c3aed", "#faf5ff", "Harness or environment error"),
}


@dataclass
class Deviation:
    """A documented deviation: the rule the stack departs from and why."""

    rule: str
    level: str                   # MUST, SHOULD, MAY or documented: of the rule, else of the case
    requires: str                # what the rule requires
    did: list                    # what the stack did, as the checks saw it
    why: str                     # the reason the profile documents
    source: str                  # the profile file (and entry)
    stack: str = ""

    def message(self) -> str:
        """The result's message: its first line names the deviation and its level
        (reports/categories.json matches it)."""
        return (f"Documented deviation from {self.rule} (a {self.level} rule) of {self.stack}: "
                f"{self.requires}")

    def details(self) -> str:
        did = "\n".join(f"  {d}" for d in self.did) or "  (see the checks)"
        return (f"rule:          {self.rule} ({self.level})\n"
                f"it requires:   {self.requires}\n"
                f"the stack did:\n{did}\n"
                f"why ({self.source}):\n  {self.why}\n")


def rule_level(rule: str, case_level: str) -> str:
    """The level of a rule: the one its id names (RFC9293/MUST-13,
    SHLD-n, MAY-n, REC-n), else the case's."""
    tail = rule.rpartition("/")[2]
    for prefix, level in (("MUST-", "MUST"), ("SHLD-", "SHOULD"), ("REC-", "SHOULD"), ("MAY-", "MAY")):
        if tail.startswith(prefix):
            return level
    return case_level


@dataclass
class Page:
    """What the top of a test page shows."""

    outcome: str                         # a key of BOXES
    description: str = ""
    requirements: tuple = ()
    checks: list = field(default_factory=list)     # harness.steps.Check
    failure: object = None               # ConformanceFailure of a failed case
    deviation: Deviation | None = None
    skip_reason: str = ""
    figures: list = field(default_factory=list)    # (title, svg text)
    diagram: str = ""                    # SVG
    ladder: str = ""
    packets: int = 0                     # of the exchange, to say when the pictures leave some out
    beside: list = field(default_factory=list)     # files beside the report that show this test


def _img(svg: str, alt: str, width: str = "100%") -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{html.escape(alt)}" style="max-width:{width}" src="data:image/svg+xml;base64,{data}">'


def _rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f'<tr><th style="text-align:left;vertical-align:top;padding:2px 12px 2px 0;white-space:nowrap;'
                   f'background:none;border:0">{html.escape(k)}</th><td style="padding:2px 0;white-space:normal;'
                   f'overflow-wrap:anywhere;background:none;border:0">{v}</td></tr>' for k, v in rows)


def _mono(text: str) -> str:
    return f'<code style="white-space:pre-wrap">{html.escape(text)}</code>'


def checked_requirements(checks) -> str:
    n = Counter(c.requirement for c in checks if c.requirement)
    return " · ".join(f"{html.escape(r)} ({k} check{'s' if k > 1 else ''})" for r, k in n.items())


def verdict_box(p: Page) -> str:
    edge, bg, heading = BOXES[p.outcome]
    rows: list = []
    if p.outcome == "passed":
        heading = (f"Passed: {len(p.checks)} check{'s' if len(p.checks) != 1 else ''}, each as required"
                   if p.checks else "Passed")
        if p.checks:
            rows.append(("requirements checked", checked_requirements(p.checks)))
            listed = "<br>".join(f"✓ {html.escape(c.title())}" for c in p.checks[:LISTED])
            more = len(p.checks) - LISTED
            rows.append(("the checks", listed + (f"<br>… and {more} more" if more > 0 else "")
                         + '<br><span style="color:#64748b">each with what was expected and seen under '
                           "<i>Test body</i>; the ladder and the diagram mark the segment a check judged with its "
                           "number (#n)</span>"))
    elif p.outcome == "deviation" and p.deviation is not None:
        d = p.deviation
        heading = f"Documented deviation from a {d.level} rule: not conformant, as the stack's profile documents"
        rows += [("rule", html.escape(f"{d.rule} ({d.level})")),
                 ("it requires", html.escape(d.requires)),
                 ("the stack did", "<br>".join(_mono(x) for x in d.did) or "see the checks below"),
                 ("why", f"{html.escape(d.why)}<br><span style=\"color:#64748b\">documented in "
                         f"{html.escape(d.source)}</span>")]
    elif p.outcome in ("failed", "timing") and p.failure is not None:
        f = p.failure
        heading = f"{BOXES[p.outcome][2]}: {f.requirement}"
        rows += [("requirement", html.escape(f.requirement)), ("check", html.escape(f.what)),
                 ("expected", _mono(f.expected)), ("seen", _mono(f.seen))]
    elif p.outcome in ("skipped", "error"):
        rows.append(("why" if p.outcome == "skipped" else "error", html.escape(p.skip_reason)))
    return (f'<div style="border:1px solid {edge};border-left:6px solid {edge};background:{bg};padding:8px 12px;'
            f'margin:0 0 12px;border-radius:4px"><div style="font-weight:700;color:{edge};margin-bottom:4px">'
            f'{html.escape(heading)}</div><table style="border-collapse:collapse">{_rows(rows)}</table></div>')


def render(p: Page) -> str:
    parts = [verdict_box(p)]
    if p.beside:
        parts.append('<p style="color:#64748b;font-size:12px;margin:0 0 8px">Beside this report (python -m '
                     "harness.report): " + " · ".join(f"<code>{html.escape(b.split(':', 1)[0])}</code>"
                                                      f"{html.escape(':' + b.split(':', 1)[1]) if ':' in b else ''}"
                                                      for b in p.beside) + "</p>")
    if p.description:
        parts.append(f"<p>{html.escape(p.description)}</p>")
    for title, picture in p.figures:
        parts.append(f'<div style="margin:8px 0">{_img(picture, title)}</div>')
    if p.packets > KEEP:
        parts.append(f'<p style="color:#64748b">The exchange has {p.packets} packets: the pictures below show the '
                     f"first {KEEP - TAIL} and the last {TAIL}; the attachments hold all of them.</p>")
    if p.diagram:
        parts.append(_img(p.diagram, "sequence diagram"))
    if p.ladder:
        parts.append(f'<pre style="line-height:1.35">{html.escape(p.ladder)}</pre>')
    return "\n".join(parts)
