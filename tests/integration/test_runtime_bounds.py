"""Attacks on the runtime's bounds, against both binaries.

The pipelining flood (issue 8): a client that sends `a NOOP` in a loop and
never reads the replies. Before the fix sora-proxy grew from 7 MB to 2.6 GB
in 20 s; now the server stops reading such a client once its output passes
the high-water mark, so its RSS stays flat and the client's writes stall.

Session ends are logged at info, one line each, with reason, duration and
bytes."""
import socket
import time

import pytest

from sorafix.common import free_port, wait_for

from test_net import base_config, metric_value, metrics_text, recv_line, server_block


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start(kind, tmp_path, sora_servers, shared_db, extra=""):
    port = free_port()
    if kind == "sora-proxy":
        cfg = base_config(tmp_path, level="info") + server_block(
            "imap", port, 'remote_addrs = ["127.0.0.1:9"]\n' + extra, typ="imap_proxy")
    else:
        cfg = base_config(tmp_path, shared_db, level="info") + server_block("imap", port, extra)
    srv = sora_servers(kind, cfg, [port])
    return srv, port


@pytest.mark.parametrize("kind", ["sora-proxy", "sora-backend"])
def test_pipelined_noop_flood_never_reading_keeps_rss_flat(kind, tmp_path, sora_servers,
                                                          shared_db):
    srv, port = start(kind, tmp_path, sora_servers, shared_db)
    pid = srv.proc.pid
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    recv_line(s)
    base = rss_kb(pid)
    chunk = b"a NOOP\r\n" * 8192
    s.setblocking(False)
    sent, curve = 0, []
    t0 = time.monotonic()
    next_sample = t0
    while time.monotonic() - t0 < 8:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
        if time.monotonic() >= next_sample:
            curve.append((round(time.monotonic() - t0, 1), rss_kb(pid) // 1024, sent // 2**20))
            next_sample += 1
    peak = max(rss_kb(pid), *(mb * 1024 for _, mb, _ in curve))
    print(f"{kind}: baseline {base // 1024} MB; (s, RSS MB, sent MB): {curve}")
    # Flat: a few MB of buffers at most (it was +2.6 GB in 20 s before).
    assert peak - base < 32 * 1024, curve
    # The client is stalled, not being served at line rate: the last
    # seconds moved nothing.
    assert curve[-1][2] == curve[-3][2], curve
    assert srv.proc.poll() is None
    s.close()


def test_session_end_is_logged_once_at_info(tmp_path, sora_servers, shared_db):
    srv, port = start("sora-backend", tmp_path, sora_servers, shared_db)
    s = socket.create_connection(("127.0.0.1", port))
    me = f"peer=127.0.0.1:{s.getsockname()[1]} "
    recv_line(s)
    s.sendall(b"a1 NOOP\r\na2 LOGOUT\r\n")
    while s.recv(4096):
        pass
    s.close()
    wait_for(lambda: "session ended: logout" in srv.log(), what="session end line")
    lines = [l for l in srv.log().splitlines() if "session ended:" in l and me in l]
    assert len(lines) == 1, lines
    line = lines[0]
    assert " INFO " in line and "proto=imap" in line and "in=20 out=" in line and " s, " in line


def test_closed_sessions_are_counted_by_reason(tmp_path, sora_servers, shared_db):
    mport = free_port()
    port = free_port()
    cfg = (base_config(tmp_path, shared_db, level="info") + server_block("imap", port)
           + server_block("metrics", mport))
    sora_servers("sora-backend", cfg, [port, mport])

    def value(reason):
        return metric_value(metrics_text(mport), "sora_connections_closed_total", protocol="imap",
                            reason=reason) or 0
    # The start-up port probe is a session too: count from here.
    wait_for(lambda: value("disconnected") >= 1, what="probe session counted")
    logout0, eof0 = value("logout"), value("disconnected")
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", port))
        recv_line(s)
        s.sendall(b"a LOGOUT\r\n")
        while s.recv(4096):
            pass
        s.close()
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    s.close()
    wait_for(lambda: value("logout") == logout0 + 2 and value("disconnected") == eof0 + 1,
             what="closes counted by reason")
