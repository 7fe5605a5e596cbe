#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (python3 stdlib only).

  gen-pcap   the RTP the SIPp peers play: the caller's RFC 4733 digit followed by a µ-law tone, the function's tone
  sink       binds the SIPp peers' per-call media ports and never reads them, so that the daemon's RTP to them
             is dropped by the kernel quietly instead of bouncing ICMP port-unreachable back to the daemon
  sample     CPU% and RSS of a few processes, once a second, to a CSV
  rtp        inter-arrival gaps of RTP in a tcpdump capture, per stream, at the receiving side
  contacts   counts the daemon's contact records by outcome (HTTP API)
  sipp       the caller/function counts from SIPp's -trace_stat CSV
"""

import argparse
import json
import math
import os
import resource
import signal
import socket
import struct
import sys
import time
import urllib.request

# --- RTP pcap for SIPp's play_pcap_audio -------------------------------------------------------------------------

# A 400 Hz tone has exactly 8 periods in a 20 ms frame at 8 kHz, so every packet of the function's tone carries the
# same payload: the capture analysis recognises relayed packets (daemon -> caller) by that payload.
FUNCTION_TONE_HZ = 400
CALLER_TONE_HZ = 1000
FRAME = 160


def ulaw(sample):
    """G.711 µ-law of one 16-bit linear sample (the classic Sun reference algorithm)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, clip) + bias
    exponent = max((magnitude >> 7).bit_length() - 1, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_frame(hz, amplitude=8000):
    return bytes(ulaw(int(amplitude * math.sin(2 * math.pi * hz * n / 8000))) for n in range(FRAME))


def checksum(data, initial=0):
    total = initial
    if len(data) % 2:
        data += b"\0"
    for (word,) in struct.iter_unpack("!H", data):
        total += word
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ether_frame(ip_id, rtp):
    """Ethernet/IPv4/UDP around an RTP packet; SIPp rewrites addresses and ports and keeps the payload."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    udp_len = 8 + len(rtp)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ip_id, 0, 64, 17, 0, src, dst))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    udp = bytearray(struct.pack("!HHHH", 6000, 7000, udp_len, 0) + rtp)
    pseudo = sum(struct.unpack("!HHHH", src + dst)) + 17 + udp_len
    udp[6:8] = struct.pack("!H", checksum(bytes(udp), pseudo) or 0xFFFF)
    mac = bytes([0, 0x50, 0x56, 0, 0, 2, 0, 0x50, 0x56, 0, 0, 1, 8, 0])
    return mac + bytes(ip) + bytes(udp)


def rtp_packet(marker, pt, seq, ts, ssrc, payload):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def write_pcap(path, packets):
    """packets: (microseconds from start, rtp bytes)."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        base = 1_700_000_000_000_000
        for index, (at_us, rtp) in enumerate(packets):
            frame = ether_frame(index + 1, rtp)
            t = base + at_us
            out.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            out.write(frame)


def gen_pcap(args):
    packets = []
    ssrc, seq, ts, at_us = 0x4B4E4150, 1000, 160_000, 100_000
    if args.digit:
        # As tests/common/pcap.rs: one 200 ms event (start with marker, continuations every 20 ms, the end packet
        # three times with the same timestamp), on telephone-event payload type 101.
        code = "0123456789*#".index(args.digit)
        frames = 10
        for i in range(frames + 2):
            end = i + 1 >= frames
            duration = (min(i, frames - 1) + 1) * FRAME
            payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)
            packets.append((at_us, rtp_packet(i == 0, 101, seq, ts, ssrc, payload)))
            seq, at_us = seq + 1, at_us + 20_000
        ts += (frames + 2) * FRAME + 2400
        at_us += args.tone_after_ms * 1000
    frame = tone_frame(args.tone_hz)
    for i in range(int(args.tone_s * 50)):
        packets.append((at_us, rtp_packet(i == 0, 0, seq, ts, ssrc, frame)))
        seq, ts, at_us = seq + 1, ts + FRAME, at_us + 20_000
    write_pcap(args.out, packets)


# --- media port sink ---------------------------------------------------------------------------------------------


def sink(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    sockets, taken = [], 0
    for base in args.base:
        # SIPp's [auto_media_port]: media_port + 4 * (call_number - 1) % 10000. SIPp itself holds the base port.
        for k in range(1, args.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                s.bind(("127.0.0.1", base + 4 * k))
            except OSError:
                s.close()
                taken += 1
                continue
            sockets.append(s)
    print(f"sink: {len(sockets)} ports bound, {taken} already taken", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.max_s
    while time.monotonic() < deadline:
        time.sleep(1)


# --- process sampler ---------------------------------------------------------------------------------------------


def proc_times(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy_ticks():
    """Busy clock ticks of all cores together (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]


def sample(args):
    """CSV rows: t_s,label,cpu_percent,rss_kib. cpu_percent is of one core (200 = both cores of this machine).

    The label "machine" is every process on the machine together: other work sharing the cores shows there.
    """
    tick = os.sysconf("SC_CLK_TCK")
    labelled = [item.split("=", 1) for item in args.proc] + [("machine", None)]
    last, last_at = {}, time.monotonic()
    start = last_at
    for label, pid in labelled:
        try:
            last[label] = proc_times(pid) if pid else machine_busy_ticks()
        except OSError:
            pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(args.out, "w", buffering=1) as out:
        out.write("t_s,label,cpu_percent,rss_kib\n")
        while time.monotonic() - start < args.max_s:
            time.sleep(1)
            now = time.monotonic()
            for label, pid in labelled:
                try:
                    cpu, rss = (proc_times(pid), proc_rss_kib(pid)) if pid else (machine_busy_ticks(), 0)
                except OSError:
                    continue
                if label in last:
                    percent = 100.0 * (cpu - last[label]) / tick / (now - last_at)
                    out.write(f"{now - start:.1f},{label},{percent:.1f},{rss}\n")
                last[label] = cpu
            last_at = now


def summarize_samples(path, active_from_s, active_to_s):
    rows = {}
    with open(path) as f:
        next(f)
        for line in f:
            t, label, cpu, rss = line.strip().split(",")
            rows.setdefault(label, []).append((float(t), float(cpu), int(rss)))
    result = {}
    for label, values in rows.items():
        active = [v for v in values if active_from_s <= v[0] <= active_to_s] or values
        cpus = [v[1] for v in active]
        rss = [v[2] for v in values]
        result[label] = {
            "cpu_avg": sum(cpus) / len(cpus),
            "cpu_max": max(cpus),
            "rss_avg_mib": sum(v[2] for v in active) / len(active) / 1024,
            "rss_max_mib": max(rss) / 1024,
        }
    return result


# --- RTP capture analysis ----------------------------------------------------------------------------------------


def read_pcap(path):
    """Yields (seconds since the first packet, ip_src, udp_sport, ip_dst, udp_dport, UDP payload, possibly truncated) from a libpcap file."""
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return
        magic = struct.unpack("<I", header[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
            magic = struct.unpack(">I", header[:4])[0]
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
        link_len = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
        if link_len is None:
            raise SystemExit(f"{path}: unsupported link type {linktype}")
        record = struct.Struct(endian + "IIII")
        first_sec = None
        while True:
            head = f.read(16)
            if len(head) < 16:
                return
            sec, frac, caplen, _ = record.unpack(head)
            if first_sec is None:
                first_sec = sec
            data = f.read(caplen)
            ip = data[link_len:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
            yield (sec - first_sec) + frac * scale, ip[12:16], sport, ip[16:20], dport, ip[ihl + 8 :]


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def gap_stats(gaps):
    gaps.sort()
    n = len(gaps)
    return {
        "gaps": n,
        "p50_ms": percentile(gaps, 50),
        "p99_ms": percentile(gaps, 99),
        "p999_ms": percentile(gaps, 99.9),
        "max_ms": gaps[-1] if gaps else float("nan"),
        "over_30ms_pct": 100.0 * sum(1 for g in gaps if g > 30.0) / n if n else float("nan"),
        "over_40ms": sum(1 for g in gaps if g > 40.0),
    }


def rtp_gaps(args):
    """Gaps between consecutive packets of one stream (5-tuple + SSRC), within one talkspurt.

    A talkspurt ends at a marker bit, a payload-type class change (telephone-event vs audio, prompt vs relayed
    audio) or a silence of more than `--split-ms` (5 s): those are the ends of a stream, not jitter. The function's tone
    (identical payload in every packet) marks relayed audio; every other daemon -> caller audio is the daemon's own
    prompt player.
    """
    relayed_payload = tone_frame(FUNCTION_TONE_HZ)[:16]
    lo, hi = args.dst_ports
    src_lo, src_hi = args.src_ports if args.src_ports else (None, None)
    streams = {}
    packets = {"to_caller": 0, "from_function": 0}
    for at, _, sport, _, dport, udp_payload in read_pcap(args.pcap):
        rtp = udp_payload
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        if lo <= dport <= hi:
            direction = "to_caller"
        elif src_lo is not None and src_lo <= sport <= src_hi:
            direction = "from_function"
        else:
            continue
        packets[direction] += 1
        pt = rtp[1] & 0x7F
        marker = bool(rtp[1] & 0x80)
        ssrc = struct.unpack("!I", rtp[8:12])[0]
        payload = rtp[12:28]
        if direction == "from_function":
            kind = "source"
        elif pt == 101:
            kind = "event"
        elif payload == relayed_payload:
            kind = "relayed"
        else:
            kind = "prompt"
        key = (direction, sport, dport, ssrc)
        state = streams.setdefault(key, {"last": None, "kind": None, "gaps": {}, "spurts": 0, "first": at})
        if kind == "prompt" and args.waiting_after_ms is not None \
                and (at - state["first"]) * 1000 > args.waiting_after_ms:
            kind = "waiting"
        new_spurt = (
            state["last"] is None
            or marker
            or kind != state["kind"]
            or (at - state["last"]) * 1000 > args.split_ms
        )
        if new_spurt:
            state["spurts"] += 1
        else:
            state["gaps"].setdefault(kind, []).append((at - state["last"]) * 1000)
        state["last"], state["kind"] = at, kind
    by_kind = {}
    for state in streams.values():
        for kind, gaps in state["gaps"].items():
            by_kind.setdefault(kind, []).extend(gaps)
    result = {
        "packets": packets,
        "streams_to_caller": sum(1 for k in streams if k[0] == "to_caller"),
        "streams_from_function": sum(1 for k in streams if k[0] == "from_function"),
        "talkspurts_to_caller": sum(s["spurts"] for k, s in streams.items() if k[0] == "to_caller"),
    }
    to_caller = by_kind.get("prompt", []) + by_kind.get("relayed", []) + by_kind.get("waiting", [])
    result["to_caller_audio"] = gap_stats(list(to_caller))
    for kind in ("prompt", "relayed", "source", "waiting"):
        result[kind] = gap_stats(by_kind.get(kind, []))
    json.dump(result, sys.stdout, indent=2)
    print()


# --- daemon records and SIPp statistics ---------------------------------------------------------------------------


def contacts(args):
    with urllib.request.urlopen(f"http://{args.http}/api/v1/contacts?limit=10000", timeout=30) as response:
        records = json.load(response)
    counts = {}
    for record in records:
        counts[record.get("outcome") or "open"] = counts.get(record.get("outcome") or "open", 0) + 1
    waits = sorted(r["queue_wait_ms"] for r in records if r.get("queue_wait_ms") is not None)
    queue_wait = None
    if waits:
        queue_wait = {"queued": len(waits), "p50": percentile(waits, 50), "p90": percentile(waits, 90),
                      "max": waits[-1], "answered_by_agents": len({r["answered_by"] for r in records
                                                                   if r.get("answered_by")})}
    json.dump({"records": len(records), "by_outcome": counts, "queue_wait_ms": queue_wait}, sys.stdout)
    print()


def sipp_stats(args):
    """The last row of a SIPp -trace_stat CSV (';'-separated), plus the largest CurrentCall seen."""
    with open(args.csv) as f:
        lines = [line.rstrip("\n;").split(";") for line in f if line.strip()]
    header, rows = lines[0], lines[1:]
    column = {name: i for i, name in enumerate(header)}

    def value(row, name):
        try:
            return int(row[column[name]])
        except (KeyError, ValueError, IndexError):
            return 0

    last = rows[-1]
    json.dump(
        {
            "created": value(last, "TotalCallCreated"),
            "successful": value(last, "SuccessfulCall(C)"),
            "failed": value(last, "FailedCall(C)"),
            "max_concurrent": max(value(r, "CurrentCall") for r in rows),
            "dead_calls": value(last, "DeadCallMsgs(C)"),
            "retransmissions": value(last, "Retransmissions(C)"),
            "unexpected_msg": value(last, "FailedUnexpectedMessage(C)"),
            "failed_timeout": value(last, "FailedCallTimeout(C)")
            + value(last, "FailedMaxUDPRetrans(C)")
            + value(last, "FailedTcpClosed(C)"),
            "failed_regexp": value(last, "FailedRegexpDoesntMatch(C)")
            + value(last, "FailedRegexpHdrNotFound(C)"),
        },
        sys.stdout,
    )
    print()


def samples_cmd(args):
    json.dump(summarize_samples(args.csv, args.active_from, args.active_to), sys.stdout)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gen-pcap")
    p.add_argument("--out", required=True)
    p.add_argument("--digit", default="")
    p.add_argument("--tone-hz", type=int, required=True)
    p.add_argument("--tone-s", type=float, required=True)
    p.add_argument("--tone-after-ms", type=int, default=300)
    p.set_defaults(func=gen_pcap)

    p = sub.add_parser("sink")
    p.add_argument("--base", type=int, action="append", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--max-s", type=float, default=600)
    p.set_defaults(func=sink)

    p = sub.add_parser("sample")
    p.add_argument("--out", required=True)
    p.add_argument("--max-s", type=float, default=600)
    p.add_argument("proc", nargs="+", help="LABEL=PID")
    p.set_defaults(func=sample)

    p = sub.add_parser("samples")
    p.add_argument("csv")
    p.add_argument("--active-from", type=float, default=0)
    p.add_argument("--active-to", type=float, default=1e9)
    p.set_defaults(func=samples_cmd)

    p = sub.add_parser("rtp")
    p.add_argument("pcap")
    p.add_argument("--dst-ports", type=int, nargs=2, required=True, help="the callers' media ports LO HI")
    p.add_argument("--src-ports", type=int, nargs=2, help="the functions' media ports LO HI (source reference)")
    p.add_argument("--split-ms", type=float, default=5000)
    p.add_argument("--waiting-after-ms", type=float,
                   help="prompt audio this long after a stream's first packet is the queue's (music, announcements)")
    p.set_defaults(func=rtp_gaps)

    p = sub.add_parser("contacts")
    p.add_argument("--http", required=True)
    p.set_defaults(func=contacts)

    p = sub.add_parser("sipp")
    p.add_argument("csv")
    p.set_defaults(func=sipp_stats)

    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
