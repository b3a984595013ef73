"""Pictures of what a case measured: small SVG charts for the report.

Rules of this file:
- Pure: numbers in, an SVG string out (no plotting library: a chart here is
  axes, points and lines, and the report must open offline from one file).
- A chart says what it shows in its title and axis labels, with units; the
  expectation is drawn beside the measurement (a line, a band for the
  tolerance), so a reader sees at once whether they agree.
- The charts a case draws (`figures.append(...)`) are the functions at the
  bottom; `chart` is the one drawing routine they share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 340
LEFT, RIGHT, TOP, BOTTOM = 86, 20, 62, 52
COLOURS = ("#1d4ed8", "#c2410c", "#15803d", "#7c3aed")


@dataclass
class Series:
    name: str
    points: list                      # [(x, y)]
    style: str = "points"             # points, line, hollow (points drawn as rings)
    colour: str | None = None
    band: list = field(default_factory=list)   # [(x, low, high)]: a tolerance drawn around a line


def _nice(lo: float, hi: float, n: int = 6) -> list[float]:
    """About n round ticks covering lo..hi (1, 2, 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start, end = math.floor(lo / step), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(start, end + 1)]


def _label(v: float) -> str:
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:g}"


def chart(title: str, x_label: str, y_label: str, series: list[Series], log2_y: bool = False,
          hlines: tuple = (), note: str = "", powers: bool = True) -> str:
    """A chart of point and line series. `log2_y`: the y axis in powers of
    two (values must be > 0), labelled 2^n (`powers`) or by value;
    `hlines`: (y, label) reference lines."""
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points] + [y for y, _ in hlines]
    ys += [v for s in series for _, lo, hi in s.band for v in (lo, hi)]
    ys = ys or [0.0, 1.0]
    f = (lambda v: math.log2(max(v, 1e-12))) if log2_y else (lambda v: v)
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if log2_y:
        y0, y1 = math.floor(min(f(y) for y in ys)), math.ceil(max(f(y) for y in ys))
        step = max(1, math.ceil((y1 - y0) / 8))
        yticks = list(range(y0, y1 + 1, step))
    else:
        yticks = _nice(min(0.0, min(ys)) if min(ys) >= 0 else min(ys), max(ys))
        y0, y1 = yticks[0], yticks[-1]
    if y0 == y1:
        y1 = y0 + 1
    xticks = _nice(x0, x1)
    x0, x1 = min(x0, xticks[0]), max(x1, xticks[-1])
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y):
        return TOP + ph - (f(y) - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f"<title>{escape(title)}</title>",
           f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="18" font-size="14" font-weight="bold" fill="#0f172a">{escape(title)}</text>']
    if note:
        out.append(f'<text x="{LEFT}" y="34" font-size="11" fill="#475569">{escape(note)}</text>')
    for t in yticks:
        y = TOP + ph - (t - y0) / (y1 - y0) * ph
        label = (f"2^{t}" if powers else _label(2.0 ** t)) if log2_y else _label(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#475569">{label}</text>')
    for t in xticks:
        if x0 <= t <= x1:
            out.append(f'<line x1="{px(t):.1f}" y1="{TOP + ph}" x2="{px(t):.1f}" y2="{TOP + ph + 4}" stroke="#64748b"/>')
            out.append(f'<text x="{px(t):.1f}" y="{TOP + ph + 17}" text-anchor="middle" fill="#475569">'
                       f"{_label(t)}</text>")
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#94a3b8"/>')
    out.append(f'<text x="{LEFT + pw / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle" fill="#0f172a">'
               f"{escape(x_label)}</text>")
    out.append(f'<text transform="translate(16 {TOP + ph / 2:.0f}) rotate(-90)" text-anchor="middle" fill="#0f172a">'
               f"{escape(y_label)}</text>")
    for y, label in hlines:
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + pw}" y2="{py(y):.1f}" stroke="#b91c1c" '
                   f'stroke-dasharray="6 4"/>')
        out.append(f'<text x="{LEFT + pw - 4}" y="{py(y) - 5:.1f}" text-anchor="end" fill="#b91c1c">'
                   f"{escape(label)}</text>")
    legend_x = LEFT
    for n, s in enumerate(series):
        colour = s.colour or COLOURS[n % len(COLOURS)]
        if s.band:
            upper = " ".join(f"{px(x):.1f},{py(hi):.1f}" for x, _, hi in s.band)
            lower = " ".join(f"{px(x):.1f},{py(lo):.1f}" for x, lo, _ in reversed(s.band))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
        if s.style == "line" and s.points:
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        else:
            fill = "none" if s.style == "hollow" else colour
            r = 4.5 if s.style == "hollow" else 3
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r}" fill="{fill}" stroke="{colour}" '
                    f'stroke-width="1.5"/>' for x, y in s.points]
        ly = TOP - 10                  # the legend: one row above the plot
        mark = (f'<line x1="{legend_x}" y1="{ly - 4}" x2="{legend_x + 16}" y2="{ly - 4}" stroke="{colour}" '
                f'stroke-width="2"/>' if s.style == "line" else
                f'<circle cx="{legend_x + 8}" cy="{ly - 4}" r="4" fill="{"none" if s.style == "hollow" else colour}" '
                f'stroke="{colour}" stroke-width="1.5"/>')
        out.append(mark + f'<text x="{legend_x + 22}" y="{ly}" fill="#0f172a">{escape(s.name)}</text>')
        legend_x += 22 + 7 * len(s.name) + 24
    out.append("</svg>")
    return "\n".join(out)


# --- the charts the cases draw -----------------------------------------------------------------

def backoff(title: str, measured: list[float], expected: list[float], tolerance) -> tuple[str, str]:
    """Retransmission intervals (seconds) against the expected ones (the
    doubling, up to its cap), on a log2 axis where doubling is a straight
    line, with the tolerance as a band. Returns (title, svg) for `figures`."""
    n = range(1, len(expected) + 1)
    band = [(k, max(e - tolerance.allowed(e), 1e-3), e + tolerance.allowed(e)) for k, e in zip(n, expected)]
    svg = chart(title, "retransmission", "interval before it (s, log scale)", [
        Series("expected (doubling, up to the cap), with the tolerance", list(zip(n, expected)), "line", band=band),
        Series("measured", list(zip(range(1, len(measured) + 1), measured)), "points", "#c2410c")], log2_y=True,
        powers=False, note="each interval is measured from the previous transmission's timestamp on the link")
    return title, svg


def isn_clock(times: list[float], isns: list[int], tick: float) -> tuple[str, str]:
    """ISNs of one 4-tuple against time, relative to the first: the points lie
    on the documented clock's line when the ISN generator runs on it."""
    from .segment import seq_diff
    t0, i0 = times[0], isns[0]
    pts = [(t - t0, seq_diff(i, i0)) for t, i in zip(times, isns)]
    span = pts[-1][0] if pts else 0.0
    title = f"ISN of each handshake on one 4-tuple ({len(isns)} handshakes)"
    return title, chart(title, "time since the first handshake (s)", "ISN − first ISN", [
        Series(f"the documented clock: one per {tick * 1e9:g} ns", [(0.0, 0.0), (span, span / tick)], "line"),
        Series("ISN of the SUT's SYN-ACK", pts, "hollow", "#c2410c")],
        note="a clock-driven ISN (RFC 9293 MUST-8) grows with time along the line")


def isn_spread(times: list[float], isns: list[int]) -> tuple[str, str]:
    """ISNs of new 4-tuples against time: a keyed hash spreads them over the
    whole sequence space."""
    t0 = times[0]
    title = f"ISN of each new 4-tuple ({len(isns)} handshakes from as many ports)"
    return title, chart(title, "time since the first handshake (s)", "ISN", [
        Series("ISN of the SUT's SYN-ACK", [(t - t0, i) for t, i in zip(times, isns)], "points", "#1d4ed8")],
        hlines=((2 ** 32, "2^32"),), note="ISN = clock + keyed hash of the 4-tuple (RFC 6528): no pattern to follow")


def prediction_misses(predictors: dict, near: int) -> tuple[str, str]:
    """How far each predictor missed the real ISN (log2), against the
    distance that counts as a hit."""
    series = [Series(name, [(n, abs(e) or 1) for n, e in enumerate(errors, 1)], "hollow" if k else "points")
              for k, (name, errors) in enumerate(predictors.items())]
    title = "How far each prediction of the next ISN missed"
    return title, chart(title, "handshake", "|real ISN − predicted| (log scale)", series, log2_y=True,
                        hlines=((near, f"a hit: within 2^{near.bit_length() - 1}"),),
                        note="points below the dashed line are hits; a keyed hash leaves them above it")
