"""The pytest plugin: options, fixtures, catalog checks and the Allure contract.

Rules of this file:
- Everything a user sets is a pytest option (`--stack`, `--stack-opt`,
  `--sysctl`, `--family`, `--tolerance-ms`, `--tolerance-pct`,
  `--link-delay-ms`, `--seed`);
  bad input is one line (pytest's "ERROR: ...") and nothing is created.
- Fixtures have the narrowest scope that works: a fresh stack (for Linux a
  fresh namespace) and Trace per test; catalog and profile per session.
- Every conformance test carries the Allure labels `case` (catalog id) and
  `stack`, and the parameter `family` (contract in ../shared/design.md).
- A stack's documented deviations become strict xfails at collection, so a
  deviation that stops happening is reported (XPASS fails the run).
- The report (Allure): every result carries epic (the RFC), feature (area),
  story (case title), severity (from the level), labels case, stack, family,
  requirement (one per id) and seed (one per claim), and `rfc` links that a
  plain `--alluredir` run resolves (the link pattern is a default here); its
  page names the files beside the report that show it (matrix row, seed
  claims, capture: Allure links only to http(s) addresses). Every check the case
  makes is a step (harness.steps). Every traced case attaches the exchange as
  the RFC 9293 ladder and an SVG, both tcpdump views, the pcap, its figures
  and its observed values; a failure also attaches expected vs seen.
- A documented deviation is an xfail for pytest (the run's verdict stays
  green, a deviation that stops happening fails it) and, for Allure, status
  `failed` with a message naming the rule and its level (categories
  "Documented deviation from a MUST rule"...): it never looks like a pass or
  a skip. The test page opens with the verdict (harness.testpage).
- The results directory belongs to the xdist controller: it removes what an
  earlier run wrote there at the start (never `history/`), and writes
  environment.properties and categories.json at the end. Workers only add
  results.
"""
from __future__ import annotations

import json
import os
import platform
import random
import zlib
from importlib import metadata
from pathlib import Path

import allure_commons
import attr
import pytest
from allure_commons.model2 import Label, StatusDetails

from . import netns
from .agent import AppError
from .catalog import Catalog, CatalogError, Profile
from .link import kernel_stamps_on
from .peer import Peer
from . import steps, testpage
from .render import exchange, ladder, svg
from .stacks import APP, SYSCTL, STATE as STATE_CAPABILITY, StackConfig, StackError, check_options, stack_class
from .trace import Trace
from .verdict import ConformanceFailure, Tolerance, TimingFailure

FAMILIES = ("ipv4", "ipv6")
SEVERITY = {"MUST": "critical", "SHOULD": "normal", "MAY": "minor", "documented": "trivial"}
STATE = pytest.StashKey[dict]()
TRACE = pytest.StashKey[Trace]()
OBSERVED = pytest.StashKey[dict]()
STACK_INFO = pytest.StashKey[dict]()
DEVIATION = pytest.StashKey[dict]()      # the profile's [[deviation]] of a test (collection)
FIGURES = pytest.StashKey[list]()
OUTCOME = pytest.StashKey[object]()
RFC_LINK_PATTERN = "https://www.rfc-editor.org/rfc/rfc{}"
CATEGORIES = Path(__file__).resolve().parent.parent / "reports" / "categories.json"
# What allure-pytest and this plugin write into a results directory.
RESULT_FILES = ("*-result.json", "*-container.json", "*-attachment*", "environment.properties",
                "categories.json", "executor.json")
TOOLS = ("scapy", "pyroute2", "pytest", "pytest-xdist", "allure-pytest")
# packetdrill scripts (.pkt files) are collected by a plugin of their own
pytest_plugins = ["harness.packetdrill.plugin"]


def pytest_addoption(parser):
    g = parser.getgroup("tcpconf", "TCP conformance suite")
    g.addoption("--stack", default="linux", metavar="NAME",
                help="stack under test (default: linux, the kernel of this machine in a fresh namespace)")
    g.addoption("--stack-opt", action="append", default=[], metavar="KEY=VALUE",
                help="option for the stack under test (repeatable)")
    g.addoption("--sysctl", action="append", default=[], metavar="KEY=VALUE",
                help="sysctl set in every SUT namespace of the run, e.g. net.ipv4.tcp_synack_retries=3 (repeatable)")
    g.addoption("--family", choices=("ipv4", "ipv6", "both"), default="both",
                help="address family of the cases (default: both)")
    g.addoption("--tolerance-ms", type=float, default=25.0, metavar="MS",
                help="absolute timing tolerance (default 25 ms)")
    g.addoption("--tolerance-pct", type=float, default=12.5, metavar="PCT",
                help="relative timing tolerance, percent of the expected interval (default 12.5)")
    g.addoption("--link-delay-ms", type=float, default=0.0, metavar="MS",
                help="put the SUT MS milliseconds away, each way: the link holds every packet that long (default 0)")
    g.addoption("--seed", type=int, default=None,
                help="seed of the peer's ISNs and ports (default: random, printed in the header)")


def _pairs(values: list[str], option: str) -> dict:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise pytest.UsageError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def pytest_configure(config):
    for line in ("case(id)", "slow", "matrix", "requires(*capabilities)", "sysctl(**values)"):
        config.addinivalue_line("markers", line)
    if getattr(config.option, "help", False):
        return
    patterns = getattr(config.option, "allure_link_pattern", None)
    if patterns is not None and "rfc" not in dict(patterns):
        config.option.allure_link_pattern = [*patterns, ("rfc", RFC_LINK_PATTERN)]
    name = config.getoption("stack")
    try:
        cls = stack_class(name)
        options = _pairs(config.getoption("stack_opt"), "--stack-opt")
        check_options(cls, options)
        catalog = Catalog.load()
        profile = Profile.load(cls.profile_name(options))
        profile.check_cases(catalog)
    except (StackError, CatalogError) as e:
        raise pytest.UsageError(str(e)) from None
    if getattr(config.option, "clean_alluredir", False) and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--clean-alluredir with -n: every xdist worker would empty the results directory "
                                "and lose the others' results; drop it: the suite cleans the directory itself")
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1          # xdist: tests handed out in pairs (see _spread)
    kernel_stamps_on()                       # before the first case: see harness/link.py
    sysctls = _pairs(config.getoption("sysctl"), "--sysctl")
    for key in sysctls:
        if cls.tunables() is not None:
            if key not in cls.tunables():
                raise pytest.UsageError(f"--sysctl {key}: stack {name} has no such tunable "
                                        f"(it has {', '.join(sorted(cls.tunables()))})")
            continue
        try:
            if not os.path.exists(netns.sysctl_path(key)):
                raise pytest.UsageError(f"--sysctl {key}: no such sysctl (no {netns.sysctl_path(key)})")
        except netns.NamespaceError as e:
            raise pytest.UsageError(f"--sysctl: {e}") from None
    if sysctls and name == "linux" and os.geteuid() == 0 and getattr(config, "workerinput", None) is None:
        _try_sysctls(sysctls)
    seed = config.getoption("seed")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        seed = workerinput["tcpconf_seed"]
    elif seed is None:
        seed = random.SystemRandom().getrandbits(32)
    # The `stack` label: the SUT kind, and for a SUT judged against another
    # kind's profile (a remote host) that profile too, so that runs against
    # different remote hosts stay apart in a merged matrix: remote:linux-6.1.
    label = name if profile.stack == name else f"{name}:{profile.stack}"
    config.stash[STATE] = {"cls": cls, "options": options, "catalog": catalog, "profile": profile,
                           "sysctls": sysctls, "seed": seed, "stack": name, "label": label}
    results = getattr(config.option, "allure_report_dir", None)
    if results and workerinput is None and not config.option.collectonly:
        clean_results(Path(results))
        config.pluginmanager.register(ResultsDirectory(config, Path(results)), "tcpconf-results")
    if results:
        outcome = config.stash[OUTCOME] = AllureOutcome()
        allure_commons.plugin_manager.register(outcome)
        config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(outcome))


class AllureOutcome:
    """allure-commons plugin: each result's status and details as the suite
    judges them, set just before allure-pytest writes the result. A test
    pytest reports as xfail because its stack documents the deviation gets
    status `failed` with the deviation as its message; a failure gets its
    expected and seen as Allure's expected and actual (the page shows the
    difference)."""

    def __init__(self):
        self.pending = None       # (Deviation | None, ConformanceFailure | None) of the test now ending

    @staticmethod
    def details(message: str, trace: str | None, expected: str, actual: str):
        return _Details(message=message, trace=trace, expected=expected, actual=actual)

    @allure_commons.hookimpl(tryfirst=True)
    def report_result(self, result):
        pending, self.pending = self.pending, None
        if pending is None:
            return
        deviation, failure = pending
        if deviation is not None and result.status == "skipped":
            result.status = "failed"
            result.statusDetails = self.details(deviation.message(), deviation.details(), deviation.requires,
                                                "\n".join(deviation.did))
            result.labels.append(Label(name="rule", value=deviation.rule))
            result.name = f"{deviation.level} deviation · {result.name}"     # in the tree, on the first screen
        elif failure is not None and result.status == "failed":
            old = result.statusDetails
            result.statusDetails = self.details(old.message if old else failure.message(), old.trace if old else None,
                                                failure.expected, failure.seen)
            result.labels.append(Label(name="rule", value=failure.requirement))


@attr.s
class _Details(StatusDetails):
    """Allure's result format has expected and actual; allure-python's model lacks them."""
    expected = attr.ib(default=None)
    actual = attr.ib(default=None)


class ResultsDirectory:
    """The controller's side of the results directory (plugin object)."""

    def __init__(self, config, directory: Path):
        self.config = config
        self.directory = directory
        self.stack: dict = {}

    def pytest_runtest_logreport(self, report):
        """Remember what the stack said about itself (from any worker)."""
        for name, value in report.user_properties:
            if name == "stack" and not self.stack:
                self.stack = json.loads(value)

    def pytest_sessionfinish(self, session):
        self.directory.mkdir(parents=True, exist_ok=True)
        write_environment(self.directory, environment(self.config, self.stack))
        drop_phantom_teardowns(self.directory)


def drop_phantom_teardowns(directory: Path) -> None:
    """Remove the `<fixture>::<lambda>` teardowns without a status that
    allure-pytest 2.16 records under pytest >= 9.1 for every fixture: pytest's
    own finalizer, never run through Allure, shown as "unknown" on every test
    page (allure-framework/allure-python#918, fixed upstream by #921)."""
    for path in directory.glob("*-container.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        afters = data.get("afters", [])
        kept = [a for a in afters if not (a.get("name", "").endswith("::<lambda>") and "status" not in a)]
        if len(kept) != len(afters):
            data["afters"] = kept
            path.write_text(json.dumps(data))


def clean_results(directory: Path) -> None:
    """Remove what an earlier run wrote into the results directory (only
    the files allure-pytest and this plugin write; `history/` stays). Done by
    the controller: an xdist worker that cleaned would wipe its siblings'."""
    if not directory.is_dir():
        return
    for pattern in RESULT_FILES:
        for path in directory.glob(pattern):
            if path.is_file():
                path.unlink()


def environment(config, info: dict) -> dict:
    """What the report's environment table shows about this run; `info` is
    what a started stack said about itself (Stack.describe())."""
    st = config.stash[STATE]
    uname = platform.uname()
    env = {"stack": st["label"], "stack.version": info.get("version", "unknown"),
           "kernel": f"{uname.system} {uname.release} {uname.machine}",
           "family": config.getoption("family"), "random-seed": st["seed"],
           "tolerance": f"{config.getoption('tolerance_ms'):g} ms or {config.getoption('tolerance_pct'):g} %"}
    if config.getoption("link_delay_ms"):
        env["link delay"] = f"{config.getoption('link_delay_ms'):g} ms each way"
    for key, value in info.items():
        if key not in ("stack", "version"):
            env[f"stack.{key}"] = value
    for key, value in st["options"].items():
        env[f"stack-opt.{key}"] = value
    defaults = {v["sysctl"]: v.get("default") for v in st["profile"].values.values() if "sysctl" in v}
    for key, value in sorted(st["sysctls"].items()):
        default = defaults.get(key)
        env[f"sysctl.{key}"] = value + (f" (namespace default {default})" if default is not None
                                        and str(default) != value else " (set with --sysctl)")
    env["python"] = platform.python_version()
    for tool in TOOLS:
        try:
            env[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            pass
    return env


def write_environment(directory: Path, env: dict) -> None:
    lines = [f"{k}={str(v).replace(chr(10), ' ')}" for k, v in env.items()]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n")
    if CATEGORIES.exists():
        (directory / "categories.json").write_text(CATEGORIES.read_text())


def _try_sysctls(sysctls: dict) -> None:
    """Apply --sysctl values once in a scratch namespace, so that a value the
    kernel refuses is one line now, not an error in every case."""
    ns = netns.Namespace.create()
    try:
        for key, value in sysctls.items():
            try:
                ns.set_sysctl(key, value)
            except netns.NamespaceError as e:
                raise pytest.UsageError(f"--sysctl {key}={value}: the kernel refuses it ({e})") from None
    finally:
        ns.remove()


def require_privileges(config) -> None:
    """Called by conformance/conftest.py: the suite's stacks create network
    namespaces and TUN/TAP devices, which needs root. A user who is not root
    gets the run re-executed inside a user namespace where the kernel allows
    it (harness.rootless), else one line saying what to run."""
    st = config.stash.get(STATE, None)
    if st is None or not getattr(st["cls"], "needs_root", False) or os.geteuid() == 0:
        return
    if getattr(config, "workerinput", None) is None and st["stack"] == "linux":
        from . import rootless
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        try:
            rootless.reexec(list(config.invocation_params.args), str(config.invocation_params.dir))
        except OSError:
            pass
    raise pytest.UsageError(
        f"stack {st['stack']} creates network namespaces and TUN devices, which needs root: "
        f"run as root (sudo .venv/bin/pytest conformance/), or allow unprivileged user namespaces "
        f"(sysctl kernel.unprivileged_userns_clone=1 user.max_user_namespaces=1000)")


def preflight(config) -> None:
    """Called by conformance/conftest.py once privileges are settled, in the
    process that runs the session (not in xdist workers): the stack checks
    this machine (Stack.preflight); what it found goes into the header, a
    problem is one line (ERROR: ...) and exit code 4."""
    st = config.stash.get(STATE, None)
    if st is None or getattr(config, "workerinput", None) is not None or config.option.collectonly:
        return
    try:
        st["notes"] = st["cls"].preflight(st["options"])
    except StackError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: every worker uses the run's seed."""
    node.workerinput["tcpconf_seed"] = node.config.stash[STATE]["seed"]


def pytest_report_header(config):
    st = config.stash.get(STATE, None)
    if st:
        return (f"tcpconf: stack {st['stack']}, seed {st['seed']}"
                + (f", sysctls {st['sysctls']}" if st["sysctls"] else "")
                + (f", link delay {config.getoption('link_delay_ms'):g} ms each way"
                   if config.getoption("link_delay_ms") else "")
                + "".join(f", {note}" for note in st.get("notes", ())))


def pytest_sessionstart(session):
    if getattr(session.config, "workerinput", None) is None:
        netns.reap()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: a worker ended, perhaps killed: remove what dead
    processes left."""
    netns.reap()


def pytest_sessionfinish(session):
    netns.closer.drain()
    if getattr(session.config, "workerinput", None) is None:
        netns.reap()


def _case_id(item) -> str | None:
    m = item.get_closest_marker("case")
    return m.args[0] if m and m.args else None


def pytest_collection_modifyitems(session, config, items):
    st = config.stash.get(STATE, None)
    if st is None:
        return
    problems = []
    for item in items:
        if "stack" not in getattr(item, "fixturenames", ()):
            continue
        cid = _case_id(item)
        if cid is None:
            problems.append(f"{item.nodeid}: a conformance test needs @pytest.mark.case('<catalog id>')")
            continue
        if cid not in st["catalog"]:
            problems.append(f"{item.nodeid}: case {cid!r} is not in the catalog (cases/*.toml)")
            continue
        params = item.callspec.params if hasattr(item, "callspec") else {}
        dev = st["profile"].deviation(cid, item.originalname, params.get("family"), params)
        if dev:
            item.stash[DEVIATION] = dev
            item.add_marker(pytest.mark.xfail(reason=f"known deviation of {st['stack']} ({dev['rule']}): {dev['reason']}",
                                              strict=True, raises=AssertionError))
    if problems:
        pytest.exit(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), returncode=4)
    items[:] = _spread(items)


def _spread(items: list) -> list:
    """Order for xdist: cases that wait on timers (slow ones first) each
    followed by a quick one. With --maxschedchunk 1 (the plugin's default
    under xdist) every worker gets its first tests as a consecutive pair, so
    each long case starts at once on a worker of its own, and with more
    workers than slow cases the run's wall time is close to its longest
    case, not a sum."""
    def waits(i):
        return i.get_closest_marker("slow") is not None or "tolerance" in getattr(i, "fixturenames", ())
    long = sorted((i for i in items if waits(i)), key=lambda i: i.get_closest_marker("slow") is None)
    quick = [i for i in items if not waits(i)]
    out = []
    for n, item in enumerate(long):
        out.append(item)
        if n < len(quick):
            out.append(quick[n])
    return out + quick[len(long):]


def pytest_generate_tests(metafunc):
    if "family" in metafunc.fixturenames:
        choice = metafunc.config.getoption("family")
        fams = FAMILIES if choice == "both" else (choice,)
        metafunc.parametrize("family", fams, ids=list(fams))


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tcpconf(pytestconfig) -> dict:
    return pytestconfig.stash[STATE]


@pytest.fixture(scope="session")
def catalog(tcpconf) -> Catalog:
    return tcpconf["catalog"]


@pytest.fixture
def case(request, catalog):
    cid = _case_id(request.node)
    if cid is None:
        pytest.fail("this test has no @pytest.mark.case('<catalog id>')")
    return catalog[cid]


@pytest.fixture
def rng(request, tcpconf) -> random.Random:
    """Random numbers of this test (ISNs, ports), reproducible with --seed."""
    return random.Random(zlib.crc32(f"{tcpconf['seed']}:{request.node.nodeid}".encode()))


@pytest.fixture
def tolerance(pytestconfig, tcpconf) -> Tolerance:
    """--tolerance-ms / --tolerance-pct, plus the stack's timer tick where its
    profile documents one ([values.timer_granularity], seconds)."""
    tick = tcpconf["profile"].values.get("timer_granularity", {}).get("value", 0.0)
    return Tolerance(pytestconfig.getoption("tolerance_ms") / 1000.0,
                     pytestconfig.getoption("tolerance_pct") / 100.0, float(tick))


@pytest.fixture
def stack(request, family, tcpconf, case):
    cls = tcpconf["cls"]
    sysctls = dict(tcpconf["sysctls"])
    for m in reversed(list(request.node.iter_markers("sysctl"))):
        sysctls.update({k: str(v) for k, v in m.kwargs.items()})
    trace = Trace()
    st = cls(StackConfig(family, trace, sysctls, tcpconf["options"]))
    if family not in st.families:
        pytest.skip(f"stack {st.name} has no {family}")
    needed = set()
    for m in request.node.iter_markers("requires"):
        needed.update(m.args)
    if sysctls:
        needed.add(SYSCTL)
    missing = sorted(needed - set(st.capabilities))
    if missing:
        pytest.skip(f"stack {st.name} lacks capability {', '.join(missing)}")
    unknown = sorted(set(sysctls) - st.tunables()) if st.tunables() is not None else []
    if unknown:
        pytest.skip(f"stack {st.name} has no tunable {unknown[0]} (it has {', '.join(sorted(st.tunables()))})")
    request.node.stash[TRACE] = trace
    try:
        st.start()
    except StackError as e:
        pytest.fail(f"harness: cannot start stack {cls.name}: {e}", pytrace=False)
    request.node.stash[STACK_INFO] = st.describe()
    delay = request.config.getoption("link_delay_ms") / 1000.0
    if delay > 0:
        st.link.delays.append(lambda raw, sent_by: delay)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def app(stack):
    if APP not in stack.capabilities or stack.app is None:
        pytest.skip(f"stack {stack.name} has no app control (capability 'app'): give it an agent")
    return stack.app


@pytest.fixture
def profile(request, stack, tcpconf):
    bound = tcpconf["profile"].bind(stack)
    values = request.node.stash.setdefault(OBSERVED, {})
    values["profile"] = bound.observed
    values["set"] = bound.changed          # what the case set: a variant, not the stack's default
    values["set"].update(stack.config.sysctls)
    return bound


@pytest.fixture
def observed(request) -> dict:
    """Values the case measured, for the report to show beside what the RFC,
    the profile or the seed note claims: `observed["synack_intervals"] = [...]`.
    Numbers, strings and lists of them; seconds for times."""
    values: dict = {}
    request.node.stash.setdefault(OBSERVED, {})["measured"] = values
    return values


@pytest.fixture
def figures(request) -> list:
    """Pictures the case draws from what it measured (harness.plot), shown
    on top of its report page and attached: `figures.append((title, svg))`."""
    out: list = []
    request.node.stash[FIGURES] = out
    return out


@pytest.fixture
def peer(stack, rng, case) -> Peer:
    port = rng.choice(stack.peer_ports) if stack.peer_ports else rng.randrange(32768, 61000)
    sut_port = getattr(stack, "server_port", None) or rng.randrange(1024, 32768)
    if sut_port == port:
        sut_port += 1
    if getattr(stack, "outlives_case", False) and STATE_CAPABILITY in stack.capabilities \
            and not getattr(stack, "server_port", None):
        # A host that outlives the case still holds earlier cases' connections
        # (TIME-WAIT, orphans sending their FIN): a port none of them uses.
        for _ in range(16):
            if sut_port != port and not stack.states(sut_port):
                break
            sut_port = rng.randrange(1024, 32768)
    return Peer(stack.link, stack.family, stack.peer_addr, stack.sut_addr, port, sut_port, rng,
                requirement=case.requirements[0])


@pytest.fixture(autouse=True)
def _allure_case(request, tcpconf):
    """The Allure contract: labels case and stack, family as a parameter and
    a label (so matrices can group by it), the catalog's facts as labels and
    links; the checks of the test start (harness.steps)."""
    steps.begin()
    cid = _case_id(request.node)
    if cid is None or cid not in tcpconf["catalog"]:
        yield
        return
    import allure

    c = tcpconf["catalog"][cid]
    allure.dynamic.label("case", cid)
    allure.dynamic.label("stack", tcpconf["label"])
    family = request.node.callspec.params.get("family") if hasattr(request.node, "callspec") else None
    if family:
        allure.dynamic.label("family", family)
        variant = "-".join(p for p in request.node.callspec.id.split("-") if p != family)
        if variant:
            allure.dynamic.label("variant", variant)       # the parameters but the family: "default", "retries-2"
    allure.dynamic.epic(c.rfc[0].split(" §")[0])
    allure.dynamic.feature(c.area)
    allure.dynamic.story(c.title)
    allure.dynamic.severity(SEVERITY[c.level])
    allure.dynamic.tag(c.level)
    for r in c.requirements:
        allure.dynamic.label("requirement", r)
    for s in c.seed:
        allure.dynamic.label("seed", s)
    for value, name in c.rfc_links():
        allure.dynamic.link(value, link_type="rfc", name=name)
    yield


def pcap_name(stack: str, item) -> str:
    """The file name of a test's capture beside the report: stack, case,
    test and parameters (Allure downloads an attachment under a hash)."""
    import re
    params = f"-{item.callspec.id}" if hasattr(item, "callspec") else ""
    case = _case_id(item) or getattr(item, "pkt", {}).get("case")          # a .pkt script's case is its path
    name = f"{stack}-{case}-{getattr(item, 'originalname', item.name)}{params}.pcap"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """The title in words (allure-pytest sets the name when the call starts,
    so a title given earlier would be overwritten). An operation or socket
    option the stack's agent lacks (EOPNOTSUPP) skips the case: a missing
    capability, not a failure."""
    if _case_id(item) is not None and getattr(item, "function", None) is not None:
        import allure
        doc = (item.function.__doc__ or "").strip().splitlines()
        cid = _case_id(item)
        cat = item.config.stash[STATE]["catalog"]
        title = doc[0] if doc else (cat[cid].title if cid in cat else item.name)
        if hasattr(item, "callspec"):
            title += f" [{item.callspec.id}]"          # as in the node id: [ipv4-retries-2]
        allure.dynamic.title(title)
        allure.dynamic.description(cat[cid].description.strip() if cid in cat else "")
    try:
        return (yield)
    except AppError as e:
        if e.error != "EOPNOTSUPP":
            raise
        pytest.skip(f"stack {item.config.stash[STATE]['stack']} lacks it: {e.message}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    trace = item.stash.get(TRACE, None)
    if trace is not None and report.when == "call":
        steps.end()
        sut = f"SUT {item.config.stash[STATE]['stack']}"
        failure = call.excinfo.value if call.excinfo and isinstance(call.excinfo.value, ConformanceFailure) else None
        if report.failed or hasattr(report, "wasxfail"):
            report.sections.append(("tcpdump trace", trace.text()))
            report.sections.append(("exchange (RFC 9293 notation)", ladder(trace, sut)))
        values = item.stash.get(OBSERVED, {})
        for kind in ("measured", "profile"):
            for k, v in values.get(kind, {}).items():
                report.user_properties.append((f"{kind}.{k}", json.dumps(v)))
        if STACK_INFO in item.stash:
            report.user_properties.append(("stack", json.dumps(item.stash[STACK_INFO])))
        deviation = _deviation(item, failure, report.wasxfail) if hasattr(report, "wasxfail") else None
        outcome = item.config.stash.get(OUTCOME, None)
        if outcome is not None:
            outcome.pending = (deviation, failure)
        _attach(item, report, call, trace, values, failure, deviation, sut)
    return report


def _deviation(item, failure: ConformanceFailure | None, reason: str) -> testpage.Deviation:
    """What a test that ended as xfail deviates from, as its stack's profile
    documents it: a [[deviation]] entry (the case failed on its rule) or a
    behaviour that departs from its rule (BoundProfile.conclude)."""
    st = item.config.stash[STATE]
    profile, cid = st["profile"], _case_id(item)
    case = st["catalog"].cases.get(cid)
    level = case.level if case else "MUST"
    dev = item.stash.get(DEVIATION, None)
    if dev is not None and failure is not None:
        return testpage.Deviation(dev["rule"], testpage.rule_level(dev["rule"], level),
                                  f"{failure.what}: {failure.expected}", [failure.seen], dev["reason"],
                                  f"{profile.source}, [[deviation]] of {cid}", st["stack"])
    bound = getattr(item, "funcargs", {}).get("profile")
    b = getattr(bound, "deviation", None)
    if b is None:                        # an xfail the profile did not name: say what pytest said
        return testpage.Deviation("?", level, case.title if case else cid, [failure.seen] if failure else [],
                                  reason, profile.source, st["stack"])
    key = next((k for k, v in profile.behaviour.items() if v is b), "?")
    where = b.get("where") or f"{profile.source}, behaviour \"{key}\""
    # what the stack did: the checks of the rule (the documented answer), each kind once, the last few
    did = list({c.what: f"{_short(c.what)}: {c.seen}" for c in steps.checks()
                if c.requirement == b["rule"] and c.passed}.values())[-4:]
    return testpage.Deviation(b["rule"], testpage.rule_level(b["rule"], level),
                              b.get("requires") or (case.title if case else cid), did, b["note"], where, st["stack"])


def _short(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def expected_vs_seen(failure: ConformanceFailure) -> str:
    """A ConformanceFailure's lines, as the report's own attachment."""
    return (f"{failure.kind}\n"
            f"requirement: {failure.requirement}\n"
            f"check:       {failure.what}\n"
            f"expected:    {failure.expected}\n"
            f"seen:        {failure.seen}\n")


def _outcome(report, call, failure, deviation) -> str:
    if deviation is not None:
        return "deviation"
    if isinstance(failure, TimingFailure):
        return "timing"
    if failure is not None:
        return "failed"
    if report.passed:
        return "passed"
    return "skipped" if report.skipped else "error"


def _attach(item, report, call, trace: Trace, values: dict, failure, deviation, sut: str) -> None:
    """The exchange every way as attachments, and a test page that opens
    with the verdict (harness.testpage): in words, then the case's
    description, its figures, the diagram and the ladder (Allure shows it in
    a sandboxed frame)."""
    import allure
    if not allure_commons.plugin_manager.hook.attach_data.get_hookimpls():
        return
    import tempfile

    kind = allure.attachment_type
    whole, picture = ladder(trace, sut, width=testpage.LADDER_WIDTH), svg(trace, sut)
    if failure is not None:
        allure.attach(expected_vs_seen(failure), name="expected vs seen", attachment_type=kind.TEXT)
    if deviation is not None:
        allure.attach(deviation.details(), name="documented deviation", attachment_type=kind.TEXT)
    figures = item.stash.get(FIGURES, [])
    for title, figure in figures:
        allure.attach(figure, name=title, attachment_type=kind.SVG)
    allure.attach(whole, name="exchange (RFC 9293 notation)", attachment_type=kind.TEXT)
    allure.attach(picture, name="sequence diagram", attachment_type=kind.SVG)
    allure.attach(trace.tcpdump(True), name="tcpdump (relative sequence numbers)", attachment_type=kind.TEXT)
    allure.attach(trace.tcpdump(False), name="tcpdump -S (absolute sequence numbers)", attachment_type=kind.TEXT)
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        trace.pcap(f.name)
        allure.attach.file(f.name, name=pcap_name(item.config.stash[STATE]["label"], item),
                           attachment_type=kind.PCAP)
    if any(values.values()):
        allure.attach(json.dumps(values, indent=2, sort_keys=True), name="observed values",
                      attachment_type=kind.JSON)
    cid = _case_id(item)
    case = item.config.stash[STATE]["catalog"].cases.get(cid)
    outcome = _outcome(report, call, failure, deviation)
    packets = len(exchange(trace).steps)
    short = packets > testpage.KEEP
    name = pcap_name(item.config.stash[STATE]["label"], item)
    beside = [f"matrix.html#{cid}: the case in the conformance matrix"]
    beside += [f"claims.html#{s}: the seed note's claim {s}" for s in (case.seed if case else ())]
    beside.append(f"pcaps/{name}: the capture (Wireshark opens it; here it is the attachment {name})")
    page = testpage.Page(
        outcome, description=case.description.strip() if case else "", requirements=case.requirements if case else (),
        beside=beside,
        checks=steps.checks(), failure=failure, deviation=deviation,
        skip_reason=str(getattr(call.excinfo, "value", "")) if call.excinfo else "",
        figures=figures, packets=packets,
        diagram=svg(trace, sut, keep=testpage.KEEP) if short else picture,
        ladder=ladder(trace, sut, keep=testpage.KEEP, width=testpage.LADDER_WIDTH) if short else whole)
    allure.dynamic.description_html(testpage.render(page))
