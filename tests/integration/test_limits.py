"""Resource limits of the security guide ("Resource Limits and DoS
Protection"), each attacked with a real client: search result cap, search
rate limit, session memory limit (IMAP FETCH and SEARCH, POP3 RETR and
TOP), message size limits (IMAP APPEND and MULTIAPPEND directly and through
sora-proxy, LMTP), and timeouts counted on proxy servers."""
import base64
import imaplib
import os
import poplib
import re
import socket
import time
import urllib.request

import pytest

from sorafix.common import free_port, wait_for
from sorafix.imap import simple_message
from sorafix.proxy import MASTER_SASL, SourceIMAP


def metrics_text(port):
    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None
    return wait_for(get, what="the metrics server")


def metric(text, name, **labels):
    """Sum of the series of name whose labels include labels (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(\{[^}]*\})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fill_multiappend(r, n, per=1000, subject="m"):
    """n small messages into INBOX with MULTIAPPENDs of non-synchronising
    literals (the quickest way in)."""
    done = 0
    while done < n:
        k = min(per, n - done)
        msgs = [simple_message(subject=f"{subject}{done + i}", body=f"b{done + i}\r\n").encode()
                for i in range(k)]
        r.send(b"fa APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs) + b"\r\n")
        resp = r.until("fa")
        assert resp[-1].startswith("fa OK"), resp[-1]
        done += k


def esearch(lines):
    return [l for l in lines if l.startswith("* ESEARCH")]


# ---- Search Result Limits ----------------------------------------------------------------------

def test_guide_search_result_limits_5000_messages_capped_at_1000(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw(timeout=120)
    r.login("bob@example.com")
    fill_multiappend(r, 5000)
    assert "* 5000 EXISTS" in r.cmd("s", "SELECT INBOX")

    # Plain SEARCH: the first 1,000, and the tagged OK says they were capped.
    resp = r.cmd("a", "SEARCH ALL")
    nums = resp[0].split()[2:]
    assert resp[0].startswith("* SEARCH ") and len(nums) == 1000, resp[0][:80]
    assert nums[0] == "1" and nums[-1] == "1000"
    assert resp[-1].startswith("a OK [LIMIT] SEARCH completed (results capped at 1000;"), resp[-1]
    resp = r.cmd("u", "UID SEARCH SUBJECT m")
    assert len(resp[0].split()) - 2 == 1000 and resp[-1].startswith("u OK [LIMIT]"), resp[-1]

    # ESEARCH COUNT, MIN and MAX are exact and need no warning.
    resp = r.cmd("e", "UID SEARCH RETURN (COUNT MIN MAX) ALL")
    assert esearch(resp) == ['* ESEARCH (TAG "e") UID MIN 1 MAX 5000 COUNT 5000'], resp
    assert resp[-1] == "e OK Search completed.", resp[-1]
    resp = r.cmd("e2", "SEARCH RETURN (MAX) SUBJECT m4998")
    assert esearch(resp) == ['* ESEARCH (TAG "e2") MAX 4999'], resp
    # ESEARCH ALL is capped like SEARCH.
    resp = r.cmd("e3", "UID SEARCH RETURN (ALL COUNT) ALL")
    assert esearch(resp) == ['* ESEARCH (TAG "e3") UID COUNT 5000 ALL 1:1000'], resp
    assert resp[-1].startswith("e3 OK [LIMIT]"), resp[-1]
    # Paging past the cap with PARTIAL (RFC 9394) and narrowing by UID
    # range both reach every message, without [LIMIT].
    resp = r.cmd("p", "UID SEARCH RETURN (PARTIAL 4001:4500) ALL")
    assert esearch(resp) == ['* ESEARCH (TAG "p") UID PARTIAL (4001:4500 4001:4500)'], resp
    assert resp[-1] == "p OK Search completed.", resp[-1]
    resp = r.cmd("n", "UID SEARCH UID 4001:5000")
    assert len(resp[0].split()) - 2 == 1000 and resp[-1] == "n OK Search completed.", resp[-1]

    # A real client copes with the capped answer.
    c = b.login("bob@example.com")
    c.select("INBOX", readonly=True)
    typ, data = c.uid("SEARCH", "ALL")
    assert typ == "OK" and len(data[0].split()) == 1000
    c.logout()
    r.close()


def test_guide_search_result_limits_not_claimed_for_unannounced_arrivals(imap_backend):
    """Messages the session has not been told of neither take places under
    the cap nor make it claim [LIMIT] (an empty view included)."""
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw()
    r.login("bob@example.com")
    assert "* 0 EXISTS" in r.cmd("s", "SELECT INBOX")
    for i in range(3):
        b.deliver("bob@example.com", simple_message(subject=f"late {i}"))
    resp = r.cmd("a", "SEARCH ALL")
    exists = max([0] + [int(l.split()[1]) for l in resp if l.endswith(" EXISTS")])
    found = [int(x) for l in resp if l.startswith("* SEARCH") for x in l.split()[2:]]
    assert all(1 <= n <= exists for n in found), resp
    assert resp[-1] == "a OK Search completed.", resp
    resp = r.cmd("c", "SEARCH RETURN (COUNT MAX) ALL")
    assert resp[-1] == "c OK Search completed.", resp
    r.close()


# ---- Search Rate Limiting ----------------------------------------------------------------------

def test_guide_search_rate_limiting_flood_gets_no_with_the_wait(imap_backend):
    mport = free_port()
    b = imap_backend.start(imap_extra='search_rate_limit_per_min = 5\n'
                                      'search_rate_limit_window = "1m"\n'
                                      f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    b.account("eve@example.com")
    b.deliver("bob@example.com", simple_message())
    b.deliver("eve@example.com", simple_message())
    one, two, other = b.raw(), b.raw(), b.raw()
    for r, who in ((one, "bob"), (two, "bob"), (other, "eve")):
        r.login(f"{who}@example.com")
        r.cmd("s", "SELECT INBOX")
    # Five searches of one user over two sessions are allowed...
    for i in range(3):
        assert one.cmd(f"a{i}", "SEARCH ALL")[-1].startswith(f"a{i} OK")
    assert two.cmd("b0", "UID SEARCH ALL")[-1].startswith("b0 OK")
    # (SORT is a search too.)
    assert two.cmd("b1", "UID SORT (ARRIVAL) UTF-8 ALL")[-1].startswith("b1 OK")
    # ...the flood after them is refused in both, with how long to wait.
    for r in (one, two):
        for i in range(10):
            line = r.cmd(f"f{i}", "SEARCH TEXT hello")[-1]
            m = re.fullmatch(rf"f{i} NO \[LIMIT\] Too many searches \(at most 5 per 60 seconds\): "
                             r"try again in (\d+) seconds\.", line)
            assert m, line
            assert 1 <= int(m.group(1)) <= 60
    line = one.cmd("g", "SORT (FROM) UTF-8 ALL")[-1]
    assert line.startswith("g NO [LIMIT] Too many searches"), line
    # The sessions go on; another user is not affected.
    assert one.cmd("n", "NOOP")[-1] == "n OK NOOP completed."
    assert other.cmd("o", "SEARCH ALL")[-1].startswith("o OK")
    assert metric(metrics_text(mport), "sora_search_rate_limited_total", protocol="imap") == 21
    for r in (one, two, other):
        r.close()


def test_guide_search_rate_limiting_window_slides(imap_backend):
    b = imap_backend.start(imap_extra='search_rate_limit_per_min = 2\n'
                                      'search_rate_limit_window = "6s"\n')
    b.account("bob@example.com")
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    assert r.cmd("a", "SEARCH ALL")[-1].startswith("a OK")
    time.sleep(3)
    assert r.cmd("b", "SEARCH ALL")[-1].startswith("b OK")
    line = r.cmd("c", "SEARCH ALL")[-1]
    m = re.search(r"try again in (\d+) seconds", line)
    assert line.startswith("c NO [LIMIT]") and m, line
    # The first search leaves the window about 3 s from now, not 6.
    assert 1 <= int(m.group(1)) <= 4, line
    time.sleep(int(m.group(1)) + 0.2)
    assert r.cmd("d", "SEARCH ALL")[-1].startswith("d OK")
    assert r.cmd("e", "SEARCH ALL")[-1].startswith("e NO [LIMIT]")
    r.close()


# ---- Session Memory Limits ---------------------------------------------------------------------

def big_base64_message(n):
    data = base64.encodebytes(os.urandom(n)).replace(b"\n", b"\r\n").decode()
    return ("From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + data)


def test_guide_session_memory_limits_imap_fetch_and_search(imap_backend):
    mport = free_port()
    b = imap_backend.start(imap_extra='session_memory_limit = "256kb"\n'
                                      f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    b.deliver("bob@example.com", big_base64_message(600000))
    r = b.raw(timeout=60)
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    # FETCH of a body decoded in memory (BINARY) larger than the limit:
    # refused before it is read, and the session goes on.
    resp = r.cmd("f", "FETCH 1 BINARY.PEEK[1]")
    assert resp[-1] == ("f NO [LIMIT] FETCH would exceed the session memory limit "
                        "(session_memory_limit); fetch a smaller part."), resp
    assert r.cmd("n", "NOOP")[-1].startswith("n OK")
    resp = r.cmd("g", "FETCH 1 (BINARY.SIZE[1] RFC822.SIZE)")
    assert resp[-1] == "g NO [LIMIT] FETCH would exceed the session memory limit " \
                       "(session_memory_limit); fetch a smaller part.", resp
    # BODY[] is streamed from the store, one slice at a time: not refused.
    r.send("h FETCH 1 BODY.PEEK[]\r\n")
    head = r.line()
    n = int(re.search(r"\{(\d+)\}$", head).group(1))
    assert n > 800000
    r.read_exact(n)
    assert r.until("h")[-1].startswith("h OK")

    text = metrics_text(mport)
    assert metric(text, "sora_session_memory_limit_exceeded_total", protocol="imap",
                  operation="fetch") == 2
    r.cmd("l", "LOGOUT")
    r.close()
    # The peak is logged at close and observed in the histogram.
    wait_for(lambda: re.search(r"session memory peak \d+ bytes \(limit 262144\)", b.server.log()),
             what="the peak in the log")
    wait_for(lambda: metric(metrics_text(mport), "sora_session_memory_peak_bytes_count",
                            protocol="imap") >= 1, what="the peak histogram")


def test_guide_session_memory_limits_imap_search_refused(imap_backend):
    mport = free_port()
    b = imap_backend.start(imap_extra='session_memory_limit = "64kb"\n'
                                      f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    r = b.raw(timeout=60)
    r.login("bob@example.com")
    fill_multiappend(r, 600)
    r.cmd("s", "SELECT INBOX")
    # 600 results do not fit in 64 KB (with the per-row cost of a result):
    # NO, not a silently shorter list.
    resp = r.cmd("a", "SEARCH ALL")
    assert resp[-1] == ("a NO [LIMIT] SEARCH would exceed the session memory limit "
                        "(session_memory_limit); narrow the search, e.g. by UID range."), resp
    assert not any(l.startswith("* SEARCH") for l in resp)
    # SORT reserves its rows (up to its cap) before its query too.
    resp = r.cmd("t", "SORT (SUBJECT) UTF-8 ALL")
    assert resp[-1] == ("t NO [LIMIT] SORT would exceed the session memory limit "
                        "(session_memory_limit); narrow the search, e.g. by UID range."), resp
    assert not any(l.startswith("* SORT") for l in resp)
    # A narrower search fits, and so does a count.
    resp = r.cmd("b", "UID SEARCH UID 1:100")
    assert len(resp[0].split()) - 2 == 100 and resp[-1] == "b OK Search completed.", resp[-1]
    resp = r.cmd("c", "SEARCH RETURN (COUNT) SUBJECT m1")
    assert esearch(resp) == ['* ESEARCH (TAG "c") COUNT 111'], resp
    assert r.cmd("n", "NOOP")[-1].startswith("n OK")
    assert metric(metrics_text(mport), "sora_session_memory_limit_exceeded_total",
                  protocol="imap", operation="search") >= 1
    r.close()


def test_guide_session_memory_limits_pop3_retr_and_top(pop3_backend):
    mport = free_port()
    b = pop3_backend.start(pop3_extra='session_memory_limit = "64kb"\n'
                                      f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message(body="small\r\n"))
    b.deliver("bob@example.com", simple_message(body=("y" * 76 + "\r\n") * 4000))
    p = b.pop("bob@example.com")
    assert p.retr(1)[0].startswith(b"+OK")
    with pytest.raises(poplib.error_proto,
                       match=r"-ERR \[SYS/TEMP\] RETR would exceed the session memory limit"):
        p.retr(2)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\] TOP would exceed"):
        p.top(2, 10)
    # The session goes on.
    assert p.noop().startswith(b"+OK")
    assert p.retr(1)[0].startswith(b"+OK")
    p.quit()
    text = metrics_text(mport)
    assert metric(text, "sora_session_memory_limit_exceeded_total", protocol="pop3",
                  operation="retr") == 1
    assert metric(text, "sora_session_memory_limit_exceeded_total", protocol="pop3",
                  operation="top") == 1
    wait_for(lambda: re.search(r"session memory peak \d+ bytes \(limit 65536\)", b.server.log()),
             what="the peak in the log")
    wait_for(lambda: metric(metrics_text(mport), "sora_session_memory_peak_bytes_count",
                            protocol="pop3") >= 1, what="the peak histogram")


# ---- Message Size Limits -----------------------------------------------------------------------

LIMIT = 100 * 1024
TOO_BIG = 300000


def check_append_toobig(r, label):
    """APPEND over append_limit on a logged-in raw IMAP connection (direct
    or through the proxy): [TOOBIG] before the literal is read, for
    synchronising and non-synchronising literals and for MULTIAPPEND; the
    session goes on and nothing is stored."""
    before = r.cmd("s0", "STATUS INBOX (MESSAGES)")[0]
    # Synchronising: the server answers at once, no "+" continuation, and
    # the client never sends the bytes.
    r.send(f"t1 APPEND INBOX {{{TOO_BIG}}}\r\n")
    line = r.line()
    assert line == f"t1 NO [TOOBIG] Message larger than APPENDLIMIT {LIMIT}.", (label, line)
    assert r.cmd("n1", "NOOP")[-1].startswith("n1 OK")
    # Non-synchronising: the answer arrives before a byte of the literal
    # was sent (so nobody, proxy included, waited for or buffered it).
    r.send(f"t2 APPEND INBOX {{{TOO_BIG}+}}\r\n")
    r.sock.settimeout(5)
    line = r.line()
    assert line == f"t2 NO [TOOBIG] Message larger than APPENDLIMIT {LIMIT}.", (label, line)
    # The client sends it anyway (it promised to): the bytes are skipped,
    # never taken for commands.
    literal = (b"x1 LOGOUT\r\n" * (TOO_BIG // 11 + 1))[:TOO_BIG]
    r.send(literal + b"\r\n")
    r.sock.settimeout(30)
    assert r.cmd("n2", "NOOP")[-1].startswith("n2 OK"), label
    # MULTIAPPEND: the second message is too big; the whole command is
    # refused (all or nothing), before its bytes are sent.
    small = simple_message(subject="first").encode()
    r.send(f"t3 APPEND INBOX {{{len(small)}}}\r\n")
    assert r.line().startswith("+"), label
    r.send(small + f" {{{TOO_BIG}}}\r\n".encode())
    line = r.line()
    assert line == f"t3 NO [TOOBIG] Message larger than APPENDLIMIT {LIMIT}.", (label, line)
    assert r.cmd("n3", "NOOP")[-1].startswith("n3 OK")
    assert r.cmd("s1", "STATUS INBOX (MESSAGES)")[0] == before, label
    # At the limit: accepted.
    ok = simple_message(body="z" * (LIMIT - 400) + "\r\n").encode()
    assert len(ok) <= LIMIT
    r.send(f"t4 APPEND INBOX {{{len(ok)}+}}\r\n".encode() + ok + b"\r\n")
    assert r.until("t4")[-1].startswith("t4 OK [APPENDUID"), label


def test_guide_message_size_limits_imap_append_toobig(imap_backend):
    b = imap_backend.start(imap_extra=f'append_limit = "{LIMIT // 1024}kb"\n')
    b.account("bob@example.com")
    r = b.raw(timeout=30)
    caps = r.cmd("c", "CAPABILITY")[0]
    r.login("bob@example.com")
    assert f"APPENDLIMIT={LIMIT}" in r.cmd("c2", "CAPABILITY")[0]
    check_append_toobig(r, "direct")
    r.close()
    # imaplib: the NO comes back as a normal failure.
    c = b.login("bob@example.com")
    typ, data = c.append("INBOX", None, None, b"Subject: x\r\n\r\n" + b"x" * TOO_BIG)
    assert typ == "NO" and b"[TOOBIG]" in data[0], (typ, data)
    assert c.noop()[0] == "OK"
    c.logout()
    del caps


class ProxyRaw:
    """RawImap-like client connecting through the proxy from 127.0.0.3."""

    def __init__(self, port):
        from sorafix.imap import RawImap
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.3", 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        self.r = RawImap(s)

    def __getattr__(self, name):
        return getattr(self.r, name)


def test_guide_message_size_limits_append_toobig_through_proxy(cluster):
    c = cluster
    c.start_backends(imap_extra=f'append_limit = "{LIMIT // 1024}kb"\n')
    p = c.add_proxy()
    c.account("alice@example.com")
    r = ProxyRaw(p.port)
    r.login("alice@example.com")
    # After login the backend answers: its APPENDLIMIT reaches the client.
    assert f"APPENDLIMIT={LIMIT}" in r.cmd("c", "CAPABILITY")[0]
    check_append_toobig(r, "proxy")
    r.close()
    m = SourceIMAP("127.0.0.1", p.port)
    m.login("alice@example.com", "pw-alice@example.com")
    typ, data = m.append("INBOX", None, None, b"Subject: x\r\n\r\n" + b"x" * TOO_BIG)
    assert typ == "NO" and b"[TOOBIG]" in data[0], (typ, data)
    m.logout()


def test_guide_message_size_limits_lmtp_552_while_streaming_memory_flat(lmtp_backend):
    b = lmtp_backend
    acc = b.account("big@example.com")
    b.start(lmtp_extra='max_message_size = "1mb"')
    pid = b.server.proc.pid
    c = b.connect(timeout=60)
    c.cmd("LHLO client.test")
    assert c.code("MAIL FROM:<s@remote.test>") == 250
    assert c.code("RCPT TO:<big@example.com>") == 250
    assert c.cmd("DATA")[0].startswith("354")
    base = rss_kb(pid)
    peak = base
    chunk = b"Subject: huge\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1024   # about 1 MB
    for i in range(100):                                             # 100 MB
        c.send(chunk)
        if i % 20 == 0:
            peak = max(peak, rss_kb(pid))
    c.send(b".\r\n")
    reply = c.reply()
    peak = max(peak, rss_kb(pid))
    # 100 MB went through; the server held none of it.
    assert peak - base < 16 * 1024, (base, peak)
    assert reply == ["552 5.3.4 <big@example.com> Message size exceeds fixed limit"], reply
    assert c.code("NOOP") == 250
    assert b.messages(acc) == []


# ---- Command Timeout and Slowloris Protection (counted on proxies) ----------------------------

def test_guide_command_timeouts_counted_on_proxy(cluster):
    c = cluster
    c.start_backends()
    user, pw = MASTER_SASL
    short = free_port()
    remotes = ", ".join(f'"{b.host}:{b.imap_port}"' for b in c.backends)
    extra = (f'[servers.imap_short]\ntype = "imap_proxy"\naddr = "127.0.0.1:{short}"\n'
             f'remote_addrs = [{remotes}]\nremote_use_proxy_protocol = true\n'
             f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
             'insecure_auth = true\ncommand_timeout = "2s"\n')
    p = c.add_proxy(extra=extra)
    c.account("alice@example.com")
    wait_for(lambda: _connectable(short), what="the short-timeout listener")
    # Before login (the proxy's own front end)...
    s = socket.create_connection(("127.0.0.1", short))
    s.settimeout(10)
    assert s.recv(1024).startswith(b"* OK")
    t0 = time.time()
    assert b"BYE" in _recv_all(s)
    assert 1.5 < time.time() - t0 < 6
    # ...and after login, while the proxy relays.
    m = SourceIMAP("127.0.0.1", short)
    m.login("alice@example.com", "pw-alice@example.com")
    t0 = time.time()
    m.sock.settimeout(10)
    _recv_all(m.sock)
    assert time.time() - t0 < 8
    wait_for(lambda: p.metric("sora_command_timeouts_total", protocol="imap", reason="idle") >= 2,
             what="two idle timeouts counted on the proxy")


def _connectable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _recv_all(s):
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    return out
