"""Reports from Allure results: the HTML report, the conformance matrix, the
seed-claims page. `python -m harness.report [DIR ...]` after a run.

Rules of this file:
- Input is one or several Allure results directories (default
  reports/allure-results): runs of several stacks or machines merge into one
  view. Stacks come from the `stack` label, families from `family`, cases
  from `case` (the suite's Allure contract, ../shared/design.md).
- A result's verdict is its Allure category (reports/categories.json, the
  rules the HTML report uses), so the pages and the report always agree.
- The matrix and claims pages are self-contained HTML (inline CSS, no
  scripts) plus Markdown for CI summaries. Reading results and rendering
  pages are pure functions; only `main` and the `build_*` functions do IO.
- The HTML report is Allure 3 from reports/node_modules (installed by
  `python3 -m harness.setup --report`), run offline with reports/allurerc.mjs
  into a fresh OUT/html/ (Allure 3 has no --clean). History carries over
  in OUT/history/ (default reports/history/). The Google Analytics tag Allure writes into index.html
  is removed; if it cannot be, the build fails rather than ship it.
"""
from __future__ import annotations

import argparse
import fnmatch
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
RESULTS = REPORTS / "allure-results"
CATEGORIES = REPORTS / "categories.json"
CLAIMS = ROOT / "cases" / "seed-claims.md"
ALLURE = REPORTS / "node_modules" / ".bin" / "allure"
COMMANDS = ("html", "matrix", "claims", "coverage")

PASSED = "Passed"
# Verdicts from worst to best: category name -> (word, css class, emoji for Markdown).
VERDICTS = {
    "RFC violation": ("FAIL", "fail", "❌"),
    "Timing tolerance exceeded": ("TIMING", "timing", "⏱️"),
    "Harness or environment error": ("ERROR", "error", "💥"),
    "Documented deviation": ("DEVIATION", "deviation", "⚠️"),
    PASSED: ("PASS", "pass", "✅"),
    "Skipped (capability missing)": ("SKIP", "skip", "⏭️"),
}
ORDER = list(VERDICTS)
FAMILIES = ("ipv4", "ipv6")

# Claims of the seed note that state a value: what the note says, as a
# number or a list, and the names (fnmatch patterns) of the observed and
# profile values that show what the stack does (the cases record them with
# the `observed` and `profile` fixtures). A scalar claim is compared with a
# scalar value, or with the length of a list of retransmission times.
CLAIMED_VALUES = {
    "S2": ("retransmission intervals, s", [1, 3, 6, 12, 24, 48, 64],
           ("*retransmission*", "initial_rto", "first_rto", "rto_min", "rto_max")),
    "S4": ("keepalive idle time, s", 7200, ("keepalive_time",)),
    "S5": ("TIME-WAIT lasts 2 MSL, s (MSL = 2 min, RFC 9293 §3.4.2)", 240, ("time_wait",)),
    "S13": ("tcp_synack_retries: SYN-ACK retransmissions", 5, ("synack_retries", "synack_retransmissions")),
    "S21": ("tcp_fin_timeout, s", 60, ("fin_timeout", "tcp_fin_timeout", "fin_wait_2_lasted")),
}


class ReportError(RuntimeError):
    """The report cannot be built; the message says what to do."""


# --- reading results ---------------------------------------------------------------------------

@dataclass
class Result:
    case: str
    title: str
    stack: str
    family: str
    test: str                  # test function and its parameters other than family
    name: str                  # the Allure name (title in words)
    verdict: str               # a key of VERDICTS
    message: str
    level: str
    requirements: tuple
    seeds: tuple
    observed: dict = field(default_factory=dict)   # {"measured": {...}, "profile": {...}}
    stop: int = 0


def load_categories(path: Path = CATEGORIES) -> list:
    return json.loads(path.read_text())


def verdict(status: str, message: str, categories: list) -> str:
    """The Allure category of a result (first match wins, as in Allure)."""
    if status == "passed":
        return PASSED
    for c in categories:
        if status in c.get("matchedStatuses", []) and re.search(c.get("messageRegex", ""), message or ""):
            return c["name"]
    return "Harness or environment error"


def parse_result(data: dict, categories: list, attachment=lambda source: None) -> Result | None:
    """A Result from one *-result.json (None for a test that is not a
    conformance case). `attachment(source)` returns an attachment's text."""
    labels: dict = {}
    for label in data.get("labels", []):
        labels.setdefault(label["name"], []).append(label["value"])
    if "case" not in labels:
        return None
    params = {p["name"]: p["value"].strip("'") for p in data.get("parameters", [])}
    family = labels.get("family", [params.get("family", "?")])[0]
    func = data.get("fullName", data.get("name", "?")).rpartition("#")[2]
    extra = [f"{k}={v}" for k, v in params.items() if k != "family"]
    message = (data.get("statusDetails") or {}).get("message") or ""
    observed = {}
    for a in data.get("attachments", []):
        if a.get("name") == "observed values":
            text = attachment(a["source"])
            if text:
                try:
                    observed = json.loads(text)
                except ValueError:
                    observed = {}
    return Result(case=labels["case"][0], title=labels.get("story", [labels["case"][0]])[0],
                  stack=labels.get("stack", ["?"])[0], family=family,
                  test=func + (f"[{', '.join(extra)}]" if extra else ""), name=data.get("name", func),
                  verdict=verdict(data.get("status", "unknown"), message, categories), message=message,
                  level=labels.get("tag", [""])[0], requirements=tuple(labels.get("requirement", [])),
                  seeds=tuple(labels.get("seed", [])), observed=observed, stop=int(data.get("stop") or 0))


def load_results(dirs: list[Path], categories: list | None = None) -> list[Result]:
    """Every conformance result of the directories; a test reported twice
    (a rerun, the same stack on two machines) counts once, the latest."""
    categories = load_categories() if categories is None else categories
    latest: dict = {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise ReportError(f"{d}: no such results directory (run the suite with --alluredir={d})")

        def attachment(source, d=d):
            p = d / source
            return p.read_text(errors="replace") if p.is_file() else None

        for path in sorted(d.glob("*-result.json")):
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            r = parse_result(data, categories, attachment)
            if r is None:
                continue
            key = (r.stack, data.get("historyId") or (r.case, r.test, r.family))
            if key not in latest or latest[key].stop <= r.stop:
                latest[key] = r
    return list(latest.values())


def stacks_of(results: list[Result]) -> list[str]:
    """Stacks in the order a reader expects: linux first, then by name."""
    return sorted({r.stack for r in results}, key=lambda s: (s != "linux", s))


def load_catalog() -> dict:
    """{case id: Case} of this checkout's catalog; empty if it cannot load."""
    try:
        from .catalog import Catalog
        return Catalog.load().cases
    except Exception:        # a results directory from another checkout still reports
        return {}


def parse_claims(text: str) -> list[tuple[str, str, str]]:
    """(id, claim, what a case must observe) per table row of seed-claims.md."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*(S\d+)\s*\|(.*)\|(.*)\|\s*$", line)
        if m:
            out.append((m.group(1), m.group(2).strip(), m.group(3).strip()))
    return out


# --- the matrix ------------------------------------------------------------------------------

@dataclass
class Row:
    case: str
    title: str
    level: str
    requirements: tuple
    seeds: tuple
    cells: dict            # (stack, family) -> [Result]


def rows(results: list[Result], catalog: dict) -> list[Row]:
    """One row per case: the catalog's, in catalog order, then any case only
    the results know (run from another checkout)."""
    out: dict = {}
    for cid, c in catalog.items():
        out[cid] = Row(cid, c.title, c.level, tuple(c.requirements), tuple(c.seed), {})
    for r in results:
        row = out.setdefault(r.case, Row(r.case, r.title, r.level, r.requirements, r.seeds, {}))
        row.cells.setdefault((r.stack, r.family), []).append(r)
    return list(out.values())


def columns(results: list[Result]) -> list[tuple[str, str]]:
    fams = sorted({r.family for r in results}, key=lambda f: (f not in FAMILIES, f)) or list(FAMILIES)
    return [(s, f) for s in stacks_of(results) for f in fams]


def worst(results: list[Result]) -> str:
    return min((r.verdict for r in results), key=lambda v: ORDER.index(v) if v in ORDER else 0)


def counts(results: list[Result]) -> list[tuple[str, int]]:
    n: dict = {}
    for r in results:
        n[r.verdict] = n.get(r.verdict, 0) + 1
    return sorted(n.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 0)


def word(v: str) -> str:
    return VERDICTS.get(v, ("ERROR",))[0]


def cell_text(results: list[Result]) -> str:
    return " · ".join(f"{word(v)} {n}" for v, n in counts(results)) if results else "not run"


def first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    return re.sub(r"^(?:[\w.]+\.)?(?:ConformanceFailure|TimingFailure|XFailed|Failed): ", "", line)


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #0f172a; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #475569; margin-bottom: 16px; } a { color: #1d4ed8; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #cbd5e1; padding: 4px 8px; vertical-align: top; text-align: left; }
thead th { background: #f1f5f9; position: sticky; top: 0; }
td.v { text-align: center; white-space: nowrap; font-weight: 600; font-size: 12px; }
.fail { background: #fecaca; color: #7f1d1d; } .timing { background: #fed7aa; color: #7c2d12; }
.error { background: #e9d5ff; color: #4c1d95; } .deviation { background: #fef08a; color: #713f12; }
.pass { background: #bbf7d0; color: #14532d; } .skip { background: #e2e8f0; color: #334155; }
.none { background: #f8fafc; color: #94a3b8; font-weight: 400; }
.missing { color: #b91c1c; font-weight: 700; }
tr.area td { background: #e2e8f0; font-weight: 700; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
.small { font-size: 12px; color: #475569; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border-radius: 3px;
                font-size: 12px; font-weight: 600; }
.claim { border: 1px solid #cbd5e1; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.claim h3 { margin: 0 0 6px; font-size: 15px; }
.holds { color: #15803d; font-weight: 700; } .differs { color: #b45309; font-weight: 700; }
"""


def _page(title: str, subtitle: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<div class=\"sub\">{subtitle}</div>{body}</body></html>\n")


def _legend() -> str:
    return "<p class=\"legend\">" + "".join(
        f"<span class=\"{c}\" title=\"{html.escape(name)}\">{w}</span>" for name, (w, c, _) in VERDICTS.items()
    ) + "<span class=\"none\">not run</span></p><p class=\"small\">FAIL: RFC violation; TIMING: the right segment, " \
        "outside the timing tolerance; DEVIATION: what the stack's profile documents, departing from the RFC; " \
        "SKIP: the stack lacks a capability the case needs; ERROR: harness or environment.</p>"


def _cell_html(results: list[Result], links: dict) -> str:
    if not results:
        return "<td class=\"v none\">not run</td>"
    cls = VERDICTS.get(worst(results), ("", "error"))[1]
    tip = "\n".join(f"{word(r.verdict)}  {r.test}" + (f": {first_line(r.message)}" if r.verdict != PASSED else "")
                    for r in sorted(results, key=lambda r: (ORDER.index(r.verdict) if r.verdict in ORDER else 0,
                                                             r.test)))
    text = html.escape(cell_text(results))
    bad = sorted(results, key=lambda r: ORDER.index(r.verdict) if r.verdict in ORDER else 0)[0]
    target = links.get((bad.name, bad.stack))
    if target:
        text = f"<a href=\"{html.escape(target)}\" style=\"color:inherit\">{text}</a>"
    return f"<td class=\"v {cls}\" title=\"{html.escape(tip)}\">{text}</td>"


def _summary(results: list[Result]) -> list[tuple[str, list]]:
    return [(s, counts([r for r in results if r.stack == s])) for s in stacks_of(results)]


def matrix_html(results: list[Result], catalog: dict, sources: list[str], links: dict | None = None,
                report_link: str | None = None) -> str:
    links = links or {}
    cols = columns(results)
    stacks = stacks_of(results)
    fams = [f for s, f in cols if s == stacks[0]] if stacks else list(FAMILIES)
    out = []
    summary = "".join(f"<tr><th>{html.escape(s)}</th><td>{len([r for r in results if r.stack == s])}</td>"
                      + "".join(f"<td class=\"v {VERDICTS.get(v, ('', 'error'))[1]}\">{word(v)} {n}</td>" for v, n in c)
                      + "</tr>" for s, c in _summary(results))
    out.append("<h2>Results by stack</h2><table><thead><tr><th>stack</th><th>tests</th><th colspan=\"6\">verdicts"
               f"</th></tr></thead><tbody>{summary}</tbody></table>")
    out.append(_legend())
    head1 = "<tr><th rowspan=\"2\">case</th><th rowspan=\"2\">level</th><th rowspan=\"2\">requirements</th>" \
            "<th rowspan=\"2\">seed</th>" + "".join(f"<th colspan=\"{len(fams)}\">{html.escape(s)}</th>" for s in stacks) \
            + "</tr>"
    head2 = "<tr>" + "".join(f"<th>{html.escape(f)}</th>" for _, f in cols) + "</tr>"
    body, area = [], None
    for row in rows(results, catalog):
        a = row.case.split(".")[0]
        if a != area:
            area = a
            body.append(f"<tr class=\"area\"><td colspan=\"{4 + len(cols)}\">{html.escape(a)}</td></tr>")
        body.append("<tr><td><code>" + html.escape(row.case) + "</code><br><span class=\"small\">"
                    + html.escape(row.title) + "</span></td>"
                    f"<td>{html.escape(row.level)}</td>"
                    f"<td class=\"mono\">{'<br>'.join(html.escape(q) for q in row.requirements)}</td>"
                    f"<td>{', '.join(html.escape(s) for s in row.seeds)}</td>"
                    + "".join(_cell_html(row.cells.get(c, []), links) for c in cols) + "</tr>")
    out.append(f"<h2>Cases</h2><table><thead>{head1}{head2}</thead><tbody>{''.join(body)}</tbody></table>")
    nav = " · ".join(x for x in (f"<a href=\"{report_link}\">Allure report</a>" if report_link else "",
                                 "<a href=\"claims.html\">seed claims</a>") if x)
    sub = (f"{len(results)} results from {html.escape(', '.join(sources))}; built "
           f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Hover a cell for its tests. {nav}")
    return _page("TCP conformance matrix", sub, "".join(out))


def matrix_markdown(results: list[Result], catalog: dict) -> str:
    cols = columns(results)
    lines = ["## TCP conformance matrix", ""]
    for s, c in _summary(results):
        lines.append(f"- **{s}**: " + ", ".join(f"{VERDICTS.get(v, ('', '', ''))[2]} {word(v)} {n}" for v, n in c))
    lines += ["", "| case | level | " + " | ".join(f"{s} {f}" for s, f in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for row in rows(results, catalog):
        cells = []
        for c in cols:
            rs = row.cells.get(c, [])
            cells.append(f"{VERDICTS.get(worst(rs), ('', '', ''))[2]} {cell_text(rs)}" if rs else "not run")
        lines.append(f"| `{row.case}` | {row.level} | " + " | ".join(cells) + " |")
    failed = [r for r in results if r.verdict not in (PASSED, "Documented deviation", "Skipped (capability missing)")]
    if failed:
        lines += ["", "### Not passed", ""]
        for r in sorted(failed, key=lambda r: (r.stack, r.case, r.test, r.family)):
            lines.append(f"- {VERDICTS.get(r.verdict, ('', '', ''))[2]} `{r.case}` {r.stack} {r.family} "
                         f"`{r.test}`: {first_line(r.message)}")
    return "\n".join(lines) + "\n"


# --- the seed-claims page -------------------------------------------------------------------

def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _intervals(values) -> list | None:
    """Times since a first transmission -> the intervals between transmissions."""
    if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) for v in values):
        return None
    prev, out = 0.0, []
    for v in values:
        out.append(round(v - prev, 3))
        prev = v
    return out


def claim_values(claim: str, results: list[Result]) -> list[dict]:
    """What the SUT showed for a claim that states a value: one entry per
    (stack, test, kind, key, value), with the families it was seen in."""
    label, claimed, fragments = CLAIMED_VALUES[claim]
    seen: dict = {}
    for r in results:
        for kind in ("profile", "measured"):
            for key, value in (r.observed.get(kind) or {}).items():
                if not _matches(key, fragments):
                    continue
                k = (r.stack, r.case, r.test, kind, key, json.dumps(value))
                entry = seen.setdefault(k, {"stack": r.stack, "case": r.case, "test": r.test, "kind": kind,
                                            "key": key, "value": value, "families": []})
                entry["families"].append(r.family)
    out = list(seen.values())
    for e in out:
        cumulative = e["key"].endswith(("_retransmissions", "_times"))
        e["holds"] = None
        if not isinstance(claimed, list) and not isinstance(e["value"], list):
            e["holds"] = e["value"] == claimed
        elif not isinstance(claimed, list) and cumulative:
            e["holds"] = len(e["value"]) == claimed
        e["intervals"] = _intervals(e["value"]) if cumulative else None
    return sorted(out, key=lambda e: (e["stack"] != "linux", e["stack"], e["kind"], e["key"], e["test"]))


def _value(v) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def claim_cases(claim: str, results: list[Result], catalog: dict) -> dict:
    """{case id: [results]} of the cases that list the claim."""
    out: dict = {cid: [] for cid, c in catalog.items() if claim in c.seed}
    for r in results:
        if claim in r.seeds:
            out.setdefault(r.case, []).append(r)
    return out


def claims_html(claims: list, results: list[Result], catalog: dict, sources: list[str]) -> str:
    stacks = stacks_of(results)
    parts = [_legend()]
    index = []
    for cid, text, observe in claims:
        cases = claim_cases(cid, results, catalog)
        mark = ("<span class=\"missing\">no case yet</span>" if not cases else
                "<br>".join(f"<span class=\"v {VERDICTS.get(worst(rs), ('', 'none'))[1] if rs else 'none'}\" "
                            f"style=\"padding:0 6px\">{word(worst(rs)) if rs else 'not run'}</span> "
                            f"<code>{html.escape(case)}</code>" for case, rs in cases.items()))
        value = ""
        if cid in CLAIMED_VALUES:
            seen = claim_values(cid, [r for rs in cases.values() for r in rs])
            value = (f"note: <b>{html.escape(_value(CLAIMED_VALUES[cid][1]))}</b><br>"
                     + ("<br>".join(f"{html.escape(e['stack'])}: {html.escape(_value(e['value']))} "
                                    f"<span class=\"small\">({html.escape(e['key'])})</span>" for e in seen)
                        or "<span class=\"missing\">not observed yet</span>"))
        index.append(f"<tr><td><a href=\"#{cid}\">{cid}</a></td><td>{html.escape(text)}</td><td>{mark}</td>"
                     f"<td class=\"mono\">{value}</td></tr>")
        block = [f"<div class=\"claim\" id=\"{cid}\"><h3>{cid}: {html.escape(text)}</h3>",
                 f"<div class=\"small\">A case must observe: {html.escape(observe)}</div>"]
        if not cases:
            block.append("<p class=\"missing\">no case yet</p>")
        else:
            head = "<tr><th>case</th>" + "".join(f"<th>{html.escape(s)} {f}</th>" for s in stacks for f in FAMILIES) \
                   + "</tr>"
            trs = []
            for case, rs in cases.items():
                title = catalog[case].title if case in catalog else (rs[0].title if rs else "")
                cells = "".join(_cell_html([r for r in rs if r.stack == s and r.family == f], {})
                                for s in stacks for f in FAMILIES)
                trs.append(f"<tr><td><code>{html.escape(case)}</code><br><span class=\"small\">"
                           f"{html.escape(title)}</span></td>{cells}</tr>")
            block.append(f"<table><thead>{head}</thead><tbody>{''.join(trs)}</tbody></table>")
        if cid in CLAIMED_VALUES:
            label, claimed, _ = CLAIMED_VALUES[cid]
            values = claim_values(cid, [r for rs in cases.values() for r in rs])
            trs = []
            for e in values:
                verdict_ = ("" if e["holds"] is None else
                            "<span class=\"holds\">as the note says</span>" if e["holds"] else
                            "<span class=\"differs\">differs from the note</span>")
                extra = (f"<br><span class=\"small\">{len(e['value'])} transmissions; intervals: "
                         f"{_value(e['intervals'])}</span>" if e["intervals"] else "")
                trs.append(f"<tr><td>{html.escape(e['stack'])}</td><td class=\"mono\">{html.escape(e['test'])}<br>"
                           f"<span class=\"small\">{', '.join(e['families'])}</span></td>"
                           f"<td class=\"mono\">{e['kind']}.{html.escape(e['key'])}</td>"
                           f"<td class=\"mono\">{html.escape(_value(e['value']))}{extra}</td><td>{verdict_}</td></tr>")
            observed = (f"<table><thead><tr><th>stack</th><th>test</th><th>recorded as</th><th>observed on the SUT"
                        f"</th><th></th></tr></thead><tbody>{''.join(trs)}</tbody></table>" if trs else
                        "<p class=\"missing\">not observed yet: no result records it</p>")
            block.append(f"<p><b>The note says</b> ({html.escape(label)}): <span class=\"mono\">"
                         f"{html.escape(_value(claimed))}</span></p>{observed}")
        block.append("</div>")
        parts.append("".join(block))
    summary = (f"<table><thead><tr><th>claim</th><th>the note says</th><th>its cases</th>"
               f"<th>value: the note's, the SUT's</th></tr></thead>"
               f"<tbody>{''.join(index)}</tbody></table>")
    covered = sum(1 for cid, _, _ in claims if claim_cases(cid, results, catalog))
    sub = (f"{covered} of {len(claims)} claims of the seed note have a case; {len(results)} results from "
           f"{html.escape(', '.join(sources))}. Stacks: {html.escape(', '.join(stacks) or 'none')}. "
           f"<a href=\"matrix.html\">conformance matrix</a>")
    return _page("The seed note's claims, checked on the wire", sub, summary + "".join(parts))


def claims_markdown(claims: list, results: list[Result], catalog: dict) -> str:
    lines = ["## The seed note's claims", "", "| claim | cases | verdicts | the note says | observed |",
             "|---|---|---|---|---|"]
    for cid, text, _ in claims:
        cases = claim_cases(cid, results, catalog)
        verdicts = "; ".join(f"{case}: {cell_text(rs)}" for case, rs in cases.items()) if cases else "**no case yet**"
        said = observed = ""
        if cid in CLAIMED_VALUES:
            label, claimed, _ = CLAIMED_VALUES[cid]
            said = f"{label}: {_value(claimed)}"
            values = claim_values(cid, [r for rs in cases.values() for r in rs])
            observed = "; ".join(f"{e['stack']} {e['key']}={_value(e['value'])}" for e in values) or "not observed yet"
        lines.append(f"| {cid} {text} | {', '.join(f'`{c}`' for c in cases) or '—'} | {verdicts} | {said} | "
                     f"{observed} |")
    return "\n".join(lines) + "\n"


# --- the Allure HTML report -----------------------------------------------------------------

GTAG = re.compile(r"\s*<script async src=\"https://www\.googletagmanager\.com/gtag/js\?id=[^\"]*\"></script>"
                  r"\s*<script>\s*window\.dataLayer[\s\S]*?</script>")


def strip_analytics(text: str) -> str:
    """index.html without the Google Analytics tag Allure 3 hard-codes."""
    out = GTAG.sub("\n", text)
    if "googletagmanager" in out or "gtag(" in out:
        raise ReportError("the report's index.html still loads Google Analytics after stripping: "
                          "the Allure version changed its tag; update GTAG in harness/report.py")
    return out


def merge_environment(texts: list[tuple[str, str]]) -> str:
    """One environment.properties from several runs [(stack, text)]: a key
    with the same value everywhere once, others once per stack as
    `<stack>.<key>`."""
    values: dict = {}
    for stack, text in texts:
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values.setdefault(key, {}).setdefault(value, []).append(stack)
    out = []
    for key, by_value in values.items():
        if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(texts):
            out.append(f"{key}={next(iter(by_value))}")
        else:
            for value, stacks in by_value.items():
                for stack in dict.fromkeys(stacks):   # a properties key ends at a space, ':' or '='
                    out.append(f"{stack}.{key}={value}")
    return "\n".join(out) + "\n"


def _merged(dirs: list[Path], into: Path) -> Path:
    """One results directory from several (hard links where possible), with
    one environment file: Allure keeps only the last directory's otherwise."""
    envs = []
    for d in dirs:
        env = d / "environment.properties"
        if env.exists():
            text = env.read_text()
            stack = next((line[6:] for line in text.splitlines() if line.startswith("stack=")), d.name)
            envs.append((stack, text))
        for p in d.iterdir():
            if not p.is_file() or p.name in ("environment.properties", "categories.json") or (into / p.name).exists():
                continue
            try:
                os.link(p, into / p.name)
            except OSError:
                shutil.copy2(p, into / p.name)
    if envs:
        (into / "environment.properties").write_text(merge_environment(envs))
    if CATEGORIES.exists():
        shutil.copy2(CATEGORIES, into / "categories.json")
    return into


def build_html(dirs: list[Path], results: list[Result], out: Path) -> Path:
    if not ALLURE.exists():
        raise ReportError("Allure 3 is not installed: run python3 -m harness.setup --report (needs Node.js 20+ and npm)")
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "TCPCONF_STACKS": ",".join(stacks_of(results)), "TCPCONF_REPORT_OUTPUT": str(out),
           "TCPCONF_REPORT_HISTORY": str(out.parent / "history" / "history.jsonl")}
    with tempfile.TemporaryDirectory(prefix="tcpconf-results-", dir=REPORTS) as tmp:
        source = [str(dirs[0])] if len(dirs) == 1 else [str(_merged(dirs, Path(tmp)))]
        p = subprocess.run([str(ALLURE), "generate", *source, "-c", str(REPORTS / "allurerc.mjs")],
                           env=env, cwd=REPORTS, capture_output=True, text=True)
    if p.returncode != 0 or not (out / "index.html").exists():
        raise ReportError(f"allure generate failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-500:]}")
    index = out / "index.html"
    index.write_text(strip_analytics(index.read_text()))
    return index


def report_links(html_dir: Path, results: list[Result]) -> dict:
    """(Allure name, stack) -> 'html/index.html#<id>' for the matrix's cells,
    from the report Allure just built (ids change with every build)."""
    path = html_dir / "test-results.json"
    if not path.exists():
        return {}
    try:
        by_id = json.loads(path.read_text()).get("byId", {})
    except ValueError:
        return {}
    multi = len(stacks_of(results)) > 1
    seen: dict = {}
    for tid, t in by_id.items():
        key = (t.get("name"), t.get("environment"))
        seen[key] = None if key in seen else tid            # ambiguous names get no link
    links = {}
    for r in results:
        tid = seen.get((r.name, r.stack if multi else "default"))
        if tid:
            links[(r.name, r.stack)] = f"{html_dir.name}/index.html#{tid}"
    return links


# --- command line ---------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "all"
    p = argparse.ArgumentParser(
        prog="python -m harness.report" + ("" if command == "all" else f" {command}"),
        description="Build the reports of one or several runs: the Allure HTML report (OUT/html/), the "
                    "conformance matrix (OUT/matrix.html, .md), the seed-claims page (OUT/claims.html, .md) and "
                    "the requirement coverage (OUT/coverage.html, .md). Subcommands build one of them: html, "
                    "matrix, claims, coverage.")
    p.add_argument("results", nargs="*", type=Path, default=[RESULTS],
                   help="Allure results directories (default reports/allure-results); several merge into one view")
    p.add_argument("--out", type=Path, default=REPORTS, help="where the pages go (default reports/)")
    a = p.parse_args(argv)
    dirs = [d.resolve() for d in a.results]
    out = a.out.resolve()
    sources = [str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d) for d in dirs]
    failed = False
    try:
        results = load_results(dirs)
        if not results:
            raise ReportError(f"no conformance results in {', '.join(sources)}: run the suite with "
                              f"--alluredir={sources[0]} first")
        out.mkdir(parents=True, exist_ok=True)
        catalog = load_catalog()
        links = {}
        if command in ("all", "html"):
            started = time.monotonic()
            try:
                index = build_html(dirs, results, out / "html")
                print(f"report: {index} ({time.monotonic() - started:.1f} s; one file, opens from disk)")
                links = report_links(out / "html", results)
            except ReportError as e:
                if command == "html":
                    raise
                print(f"report: {e}", file=sys.stderr)
                failed = True
        if command in ("all", "matrix"):
            report_link = "html/index.html" if (out / "html" / "index.html").exists() else None
            (out / "matrix.html").write_text(matrix_html(results, catalog, sources, links, report_link))
            (out / "matrix.md").write_text(matrix_markdown(results, catalog))
            print(f"report: {out / 'matrix.html'} and matrix.md ({len(results)} results, "
                  f"stacks {', '.join(stacks_of(results))})")
        if command in ("all", "claims"):
            if not CLAIMS.exists():
                raise ReportError(f"{CLAIMS}: the seed claims are missing")
            claims = parse_claims(CLAIMS.read_text())
            (out / "claims.html").write_text(claims_html(claims, results, catalog, sources))
            (out / "claims.md").write_text(claims_markdown(claims, results, catalog))
            print(f"report: {out / 'claims.html'} and claims.md")
        if command in ("all", "coverage"):
            from . import coverage
            covs = coverage.build(results, catalog, out, sources)
            print(f"report: {out / 'coverage.html'} and coverage.md ({coverage.summary(covs)})")
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
