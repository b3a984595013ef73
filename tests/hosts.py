"""Two hosts on one link, as the README's remote host is set up: a SUT's
namespace and a tester's (harness.netns: the suite's prefix, removed on
every path), joined by a veth."""
from contextlib import ExitStack, contextmanager

from pyroute2 import IPRoute

from harness.l2 import offloads_off
from harness.netns import Namespace, write_sysctl

IFA_F_NODAD = 0x02


@contextmanager
def sut_and_tester(sut_if: str, tester_if: str, tester_address: str | None = None, sut_offloads: str = "off"):
    """Namespaces S and T joined by a veth. S, the SUT's host, has its
    loopback up and holds 198.18.0.1 and 2001:2::1 on `sut_if` (no
    link-local address or router solicitation: only the tester's packets
    cross the link), with its offloads off as the README asks (`sut_offloads`
    "on": left as a veth has them). T, the tester's, has `tester_if` up with
    IPv6 off and, if given, `tester_address`/24 of its own. Yields (S, T)."""
    with ExitStack() as made:
        s = Namespace.create()
        made.callback(s.remove)
        t = Namespace.create()
        made.callback(t.remove)
        with t.entered(), IPRoute() as ipr:
            ipr.link("add", ifname=tester_if, kind="veth", peer={"ifname": sut_if, "net_ns_fd": f"/run/netns/{s.name}"})
            write_sysctl(f"net.ipv6.conf.{tester_if}.disable_ipv6", 1)
            idx = ipr.link_lookup(ifname=tester_if)[0]
            if tester_address is not None:
                ipr.addr("add", index=idx, address=tester_address, prefixlen=24)
            ipr.link("set", index=idx, state="up")
        with s.entered(), IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            idx = ipr.link_lookup(ifname=sut_if)[0]
            write_sysctl(f"net.ipv6.conf.{sut_if}.addr_gen_mode", 1)
            write_sysctl(f"net.ipv6.conf.{sut_if}.router_solicitations", 0)
            ipr.addr("add", index=idx, address="198.18.0.1", prefixlen=24)
            ipr.addr("add", index=idx, address="2001:2::1", prefixlen=64, flags=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
            if sut_offloads == "off":
                offloads_off(sut_if)
        yield s, t
