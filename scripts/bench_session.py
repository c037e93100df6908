#!/usr/bin/env python3
"""Helpers for scripts/bench-session.sh: check what a run delivered, read figures off a capture, print the table.

Subcommands (each prints one line per answer, or a table):

  check-json JSON EXPECTED   check a `tcpshake handshake --json` run that sent the file EXPECTED to the echo
                             service: the summary says outcome ok and as many bytes sent and received as EXPECTED
                             holds, and the received data (the steps' `data` fields, placed by `rel_seq`) equals
                             EXPECTED. Prints "ok SPORT SRTT_MS CONTENT" (CONTENT: exact, or unchecked when the
                             steps do not carry every byte) and exits 0, or prints "wrong REASON" and exits 1.
  gap PCAP SPORT             the time from the peer's SYN-ACK to our first segment acknowledging it, in ms, on
                             connection SPORT of the capture; "unmeasured REASON" (exit 1) when it is not there.
  wire-rtt PCAP SPORT        the median wire RTT of SPORT's data, in ms, from the capture: for each ACK that
                             advances the cumulative ack to exactly the end of a segment we sent, the time since
                             that segment left; under Karn's rule no sample is taken from an ACK that covers any
                             retransmitted byte. Prints "MEDIAN_MS SAMPLES", or "unmeasured REASON" (exit 1).
  report RESULTS CASES CMPS  the table: RESULTS has "case run value status note" lines (tab-separated; status ok,
                             wrong, unmeasured or skipped), CASES "case tool what", CMPS "kind a b limit what"
                             (kind ratio: median(a)/median(b) <= limit; kind within: median(a) within a factor
                             limit of 1). Exits 1 unless every comparison is met.

The capture reader knows pcap (micro- or nanosecond, either byte order) with Ethernet or Linux cooked link
headers, IPv4 and IPv6; it needs nothing outside the standard library.
"""

import json
import math
import statistics
import struct
import sys

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


def packets(path):
    """Yields (t_ns, src_port, dst_port, seq, ack, flags, payload_len) for every TCP segment in a pcap file."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            raise ValueError(f"{path}: not a pcap file (too short)")
        magic = head[:4]
        table = {
            b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
            b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
        }
        if magic not in table:
            raise ValueError(f"{path}: not a pcap file (magic {magic.hex()}; pcapng is not read here)")
        order, scale = table[magic]
        linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(order + "IIII", rec)
            data = f.read(incl)
            seg = tcp_of(linktype, data)
            if seg is not None:
                yield (sec * 1_000_000_000 + frac * scale, *seg)


def tcp_of(linktype, data):
    """Returns (sport, dport, seq, ack, flags, payload_len) of a captured frame, or None when it is not TCP."""
    if linktype == 1:  # Ethernet
        off, etype = 14, int.from_bytes(data[12:14], "big")
        while etype in (0x8100, 0x88A8) and len(data) >= off + 4:
            etype, off = int.from_bytes(data[off + 2:off + 4], "big"), off + 4
    elif linktype == 113:  # Linux cooked v1
        off, etype = 16, int.from_bytes(data[14:16], "big")
    elif linktype == 276:  # Linux cooked v2
        off, etype = 20, int.from_bytes(data[0:2], "big")
    else:
        raise ValueError(f"link type {linktype} is not read here")
    if etype == 0x0800 and len(data) >= off + 20:
        ihl = (data[off] & 0x0F) * 4
        if data[off + 9] != 6:
            return None
        total = int.from_bytes(data[off + 2:off + 4], "big")
        tcp, iplen = off + ihl, total - ihl
    elif etype == 0x86DD and len(data) >= off + 40:
        if data[off + 6] != 6:  # extension headers are not used in the lab
            return None
        tcp, iplen = off + 40, int.from_bytes(data[off + 4:off + 6], "big")
    else:
        return None
    if len(data) < tcp + 14:
        return None
    sport, dport, seq, ack = struct.unpack(">HHII", data[tcp:tcp + 12])
    hlen = (data[tcp + 12] >> 4) * 4
    return sport, dport, seq, ack, data[tcp + 13], iplen - hlen


def connection(path, sport):
    """Splits SPORT's segments into ours (from SPORT) and theirs (to SPORT), each (t, seq, ack, flags, len)."""
    ours, theirs = [], []
    for t, sp, dp, seq, ack, flags, n in packets(path):
        if sp == sport:
            ours.append((t, seq, ack, flags, n))
        elif dp == sport:
            theirs.append((t, seq, ack, flags, n))
    return ours, theirs


def gap(path, sport):
    ours, theirs = connection(path, sport)
    synacks = [p for p in theirs if p[3] & (SYN | ACK) == SYN | ACK]
    if not synacks:
        return None, f"no SYN-ACK to port {sport} in the capture"
    t0, peer_isn = synacks[0][0], synacks[0][1]
    want = (peer_isn + 1) % 2**32
    for t, _, ack, flags, _ in ours:
        if t >= t0 and flags & ACK and not flags & SYN and ack == want:
            return (t - t0) / 1e6, None
    return None, f"no segment from port {sport} acknowledges the SYN-ACK (ack {want})"


def wire_rtt(path, sport):
    ours, theirs = connection(path, sport)
    events = sorted([(p[0], 0, p) for p in ours] + [(p[0], 1, p) for p in theirs])
    isn = next((p[1] for p in ours if p[3] & SYN), None)
    if isn is None:
        return None, f"no SYN from port {sport} in the capture"
    rel = lambda s: (s - isn) % 2**32  # noqa: E731 (relative sequence numbers, wrap-safe)
    first_sent = {}  # relative end of a segment -> when it first left
    retrans = []  # relative [start, end) ranges sent again
    snd_max, una, samples = 1, 1, []
    for t, side, (_, seq, ack, flags, n) in events:
        if side == 0:
            if n == 0:
                continue
            start, end = rel(seq), rel(seq) + n
            if start < snd_max:  # new data always starts at the highest byte sent so far
                retrans.append((start, end))
            first_sent.setdefault(end, t)
            snd_max = max(snd_max, end)
            continue
        if not flags & ACK:
            continue
        a = rel(ack)
        if a <= una or a > snd_max + 1:  # old, duplicate, or acknowledging our FIN
            continue
        if a in first_sent and not any(s < a and una < e for s, e in retrans):
            samples.append((t - first_sent[a]) / 1e6)
        una = a
    if not samples:
        return None, f"no Karn-valid RTT sample for port {sport}"
    return (statistics.median(samples), len(samples)), None


def check_json(path, expected_path):
    want = open(expected_path, "rb").read()
    summary, sport, got, have, unchecked = None, None, bytearray(len(want)), bytearray(len(want)), None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except json.JSONDecodeError as e:
                return f"wrong output line is not JSON ({e}): {line[:80]}"
            if o.get("type") == "summary":
                summary = o
            if o.get("type") != "step":
                continue
            if o.get("direction") == "sent" and sport is None and o.get("src"):
                sport = int(o["src"].rsplit(":", 1)[1])
            if o.get("direction") != "received" or not o.get("len"):
                continue
            n, start = o["len"], o.get("rel_seq", 0) - 1
            data = decode(o.get("data"), n)
            if data is None:
                unchecked = unchecked or f"a {n}-byte segment's data is not shown in full"
                continue
            if start < 0 or start + n > len(want):
                return f"wrong received data at relative seq {start + 1}..{start + n}, beyond the {len(want)} sent"
            got[start:start + n] = data
            have[start:start + n] = b"\x01" * n
    missing = have.count(0)
    if missing == 0:
        if bytes(got) != want:
            first = next(i for i in range(len(want)) if got[i] != want[i])
            return f"wrong echoed data differs from what was sent at byte {first}"
        content = "exact"
    elif unchecked is not None:
        content = f"unchecked ({unchecked})"
    else:
        content = f"only {len(want) - missing} of {len(want)} bytes came back"
    if summary is None:
        return f"wrong no summary line (echoed content: {content})"
    problems = [f"{k} {summary.get(k)}, want {len(want)}" for k in ("bytes_sent", "bytes_received")
                if summary.get(k) != len(want)]
    if summary.get("outcome") != "ok":
        problems.append(f"outcome {summary.get('outcome')!r}")
    if sport is None:
        problems.append("no sent step names our port")
    if problems:
        return f"wrong summary: {'; '.join(problems)} (echoed content: {content})"
    return f"ok {sport} {summary.get('srtt_ms', '-')} {content}"


def decode(shown, n):
    """The payload bytes of a step's data field, or None when it does not hold exactly n bytes."""
    if shown is None:
        return None
    if shown.startswith("hex:"):
        try:
            b = bytes.fromhex(shown[4:])
        except ValueError:
            b = None
        if b is not None and len(b) == n:
            return b
    b = shown.encode()
    return b if len(b) == n else None


def report(results, cases, cmps):
    runs = {}  # case -> [(status, value, note)]
    for line in open(results, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 4:
            runs.setdefault(f[0], []).append((f[3], float(f[2]), f[4] if len(f) > 4 else ""))
    info = [line.rstrip("\n").split("\t") for line in open(cases, encoding="utf-8") if line.strip()]
    comps = [line.rstrip("\n").split("\t") for line in open(cmps, encoding="utf-8") if line.strip()]

    def values(case, unknown, wrong=math.inf):
        """CASE's values: a wrong run counts as WRONG (infinitely slow), an unmeasured one as UNKNOWN."""
        out = []
        for st, v, _ in runs.get(case, []):
            if st == "ok":
                out.append(v)
            elif st == "wrong" and wrong is not None:
                out.append(wrong)
            elif st == "unmeasured" and unknown is not None:
                out.append(unknown)
        return out

    def med(vals):
        return statistics.median(vals) if vals else math.nan

    def bad(case):
        out = {}
        for st, _, note in runs.get(case, []):
            if st != "ok":
                out.setdefault(st, []).append(note)
        return out

    def div(x, y):
        if math.isnan(x) or math.isnan(y) or (math.isinf(x) and math.isinf(y)):
            return math.nan
        return math.inf if y == 0 else x / y

    def fmt(v):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "failed"
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"

    print("| case | tool | what | runs ok | median |")
    print("| --- | --- | --- | ---: | ---: |")
    for case, tool, what in info:
        rs = runs.get(case, [])
        ok = sum(1 for st, _, _ in rs if st == "ok")
        extra = "".join(f"; {len(v)} {k}" for k, v in sorted(bad(case).items()))
        print(f"| {case} | {tool} | {what} | {ok}/{len(rs)}{extra} | {fmt(med(values(case, None)))} |")
    print()
    print("| target | figure | verdict |")
    print("| --- | ---: | --- |")
    all_met = True
    for kind, a, b, limit, what in comps:
        limit = float(limit)
        # A measured case's own wrong runs decide its target. Anything else not measured (an unmeasured run, or
        # a wrong run of the reference tool) could have been any value: the verdict is given only when it is the
        # same at both extremes (0 and infinity), else it is undecided.
        if kind == "ratio":
            point = div(med(values(a, None)), med(values(b, None, wrong=None)))
            lo = div(med(values(a, 0.0)), med(values(b, math.inf, wrong=math.inf)))
            hi = div(med(values(a, math.inf)), med(values(b, 0.0, wrong=0.0)))
            ok_lo, ok_hi = lo <= limit, hi <= limit
            target = f"target ≤ {limit:g}×"
        else:  # within: median(a) within a factor limit of 1
            point, lo, hi = med(values(a, None)), med(values(a, 0.0)), med(values(a, math.inf))
            ok_lo, ok_hi = 1 / limit <= lo <= limit, 1 / limit <= hi <= limit
            target = f"target within {limit:g}×"
        fig = "-" if math.isnan(point) or math.isinf(point) else f"{point:.2f}×"
        wrong = bad(a).get("wrong")
        unknown = [f"{c}: {len(v)} {k} ({v[0]})" for c in (a, b) for k, v in bad(c).items()
                   if k not in ("skipped",) and not (c == a and k == "wrong")]
        if wrong:
            verdict = f"MISSED: {len(wrong)} of {len(runs.get(a, []))} {a} runs wrong ({wrong[0]})"
        elif not runs.get(a) or (kind == "ratio" and not runs.get(b)):
            verdict = "undecided: no runs"
        elif math.isnan(lo) or math.isnan(hi):
            verdict = f"undecided ({target}): " + "; ".join(unknown)
        elif ok_lo == ok_hi:
            verdict = ("met" if ok_lo else "MISSED") + f" ({target})"
            if unknown:
                verdict += "; whatever the runs not measured were: " + "; ".join(unknown)
        else:
            verdict = f"undecided ({target}): " + "; ".join(unknown)
        all_met = all_met and verdict.startswith("met")
        print(f"| {what} | {fig} | {verdict} |")
    return 0 if all_met else 1


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "check-json" and len(args) == 2:
        out = check_json(*args)
        print(out)
        return 0 if out.startswith("ok ") else 1
    if cmd == "gap" and len(args) == 2:
        v, why = gap(args[0], int(args[1]))
        print(f"{v:.6f}" if why is None else f"unmeasured {why}")
        return 0 if why is None else 1
    if cmd == "wire-rtt" and len(args) == 2:
        v, why = wire_rtt(args[0], int(args[1]))
        print(f"{v[0]:.6f} {v[1]}" if why is None else f"unmeasured {why}")
        return 0 if why is None else 1
    if cmd == "report" and len(args) == 3:
        return report(*args)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
