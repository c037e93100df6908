#!/usr/bin/env python3
"""One TCP connection played by hand with scapy, the way its users do it:
three-way handshake, 6 bytes to the lab's echo service, the echo read back
and acknowledged, then an active FIN close.

Run it inside the lab's client namespace (scripts/bench-handshake.sh does).
As scapy's FAQ says, the client kernel would reset the connection the moment
the SYN-ACK arrives, so the script first adds a firewall rule that drops this
connection's outgoing RSTs (an nftables table of its own) and removes it on
exit. It talks only to lab addresses (198.51.100.0/24).

Prints the connection's time in milliseconds (after scapy is imported).
"""

import argparse
import ipaddress
import os
import random
import subprocess
import sys
import threading
import time

LAB = ipaddress.ip_network("198.51.100.0/24")


def nft(*args):
    subprocess.run(["nft", *args], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="198.51.100.1")
    ap.add_argument("--dst", default="198.51.100.2")
    ap.add_argument("--dport", type=int, default=7)
    ap.add_argument("--iface", default="veth0")
    ap.add_argument("--data", default="hello\n")
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    for addr in (a.src, a.dst):
        if ipaddress.ip_address(addr) not in LAB:
            sys.exit(f"{addr} is not a lab address (198.51.100.0/24)")
    data = a.data.encode()
    sport = random.randint(40000, 59999)
    table = f"scapy_bench_{os.getpid()}"

    from scapy.all import IP, TCP, AsyncSniffer, conf, send  # noqa: E402 (slow import, after the checks)

    conf.verb = 0
    nft("add", "table", "inet", table)
    try:
        nft("add", "chain", "inet", table, "out", "{ type filter hook output priority -300 ; }")
        nft("add", "rule", "inet", table, "out", "ip", "saddr", a.src, "tcp", "sport", str(sport),
            "tcp", "flags", "&", "rst", "!=", "0", "drop")
        start = time.perf_counter()
        run(a, data, sport, IP, TCP, AsyncSniffer, send)
        print(f"{(time.perf_counter() - start) * 1000:.3f}")
    finally:
        nft("delete", "table", "inet", table)


def run(a, data, sport, IP, TCP, AsyncSniffer, send):
    got = []
    cond = threading.Condition()
    started = threading.Event()

    def keep(p):
        with cond:
            got.append(p)
            cond.notify_all()

    def wait(pred, what):
        deadline = time.monotonic() + a.timeout
        with cond:
            while True:
                for p in got:
                    if pred(p[TCP]):
                        return p[TCP]
                left = deadline - time.monotonic()
                if left <= 0:
                    sys.exit(f"no {what} within {a.timeout} s")
                cond.wait(left)

    sn = AsyncSniffer(iface=a.iface, store=False, prn=keep, started_callback=started.set,
                      filter=f"tcp and src host {a.dst} and src port {a.dport} and dst port {sport}")
    sn.start()
    started.wait(a.timeout)
    try:
        ip = IP(src=a.src, dst=a.dst)
        isn = random.getrandbits(32)
        send(ip / TCP(sport=sport, dport=a.dport, flags="S", seq=isn))
        sa = wait(lambda t: t.flags.S and t.flags.A and t.ack == (isn + 1) % 2**32, "SYN-ACK")
        seq, ack = (isn + 1) % 2**32, (sa.seq + 1) % 2**32
        send(ip / TCP(sport=sport, dport=a.dport, flags="A", seq=seq, ack=ack))
        send(ip / TCP(sport=sport, dport=a.dport, flags="PA", seq=seq, ack=ack) / data)
        seq = (seq + len(data)) % 2**32
        echo = bytearray()

        def echoed(t):
            nonlocal echo, ack
            payload = bytes(t.payload)
            if payload and t.seq == ack:
                echo += payload
                ack = (ack + len(payload)) % 2**32
            return len(echo) >= len(data)

        wait(echoed, "echo")
        if bytes(echo) != data:
            sys.exit(f"echo {bytes(echo)!r}, want {data!r}")
        send(ip / TCP(sport=sport, dport=a.dport, flags="A", seq=seq, ack=ack))
        send(ip / TCP(sport=sport, dport=a.dport, flags="FA", seq=seq, ack=ack))
        fin = wait(lambda t: t.flags.F and t.ack == (seq + 1) % 2**32, "FIN")
        send(ip / TCP(sport=sport, dport=a.dport, flags="A", seq=(seq + 1) % 2**32, ack=(fin.seq + 1) % 2**32))
    finally:
        sn.stop()


if __name__ == "__main__":
    main()
