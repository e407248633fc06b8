"""imap_proxy security: identical failures, nothing smuggled to a backend,
pre-auth limits, and no hang on a backend that never greets.

The proxy trusts only 127.0.0.1 (trusted_networks); clients connect from
127.0.0.3, an untrusted address, as an internet client would."""
import base64
import socket
import time

import pytest

from sorafix.imap import RawImap
from sorafix.proxy import MASTER_SASL, SourceIMAP

TOP = 'trusted_networks = ["127.0.0.1/32"]\n'


def raw(port, source="127.0.0.3", timeout=15):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    r = RawImap(s)
    r.port = s.getsockname()[1]
    return r


@pytest.fixture
def one_proxy(cluster):
    cluster.start_backends()
    cluster.add_proxy(top=TOP)
    # bcrypt, as in production: the unknown-user path verifies a dummy
    # bcrypt hash of the same cost.
    cluster.admin.ok("accounts", "create", "--email", "alice@example.com",
                     "--password", "pw-alice@example.com")
    return cluster


def plain(authz, authc, pw):
    return base64.b64encode(f"{authz}\0{authc}\0{pw}".encode()).decode()


def test_failures_identical(one_proxy):
    p = one_proxy.proxies[0]
    user, secret = MASTER_SASL
    attempts = {
        "wrong password": 'LOGIN alice@example.com wrong',
        "unknown user": 'LOGIN nobody@example.com wrong',
        "master sasl wrong secret": f'AUTHENTICATE PLAIN {plain("alice@example.com", user, "nope")}',
        "master sasl right secret, untrusted": f'AUTHENTICATE PLAIN {plain("alice@example.com", user, secret)}',
        "plain wrong": f'AUTHENTICATE PLAIN {plain("", "alice@example.com", "x")}',
    }
    replies, times = {}, {}
    for name, cmd in attempts.items():
        r = raw(p.port)
        t0 = time.monotonic()
        replies[name] = r.cmd("a", cmd)
        times[name] = time.monotonic() - t0
        r.close()
    assert len({tuple(v) for v in replies.values()}) == 1, replies
    assert replies["wrong password"] == ["a NO [AUTHENTICATIONFAILED] Authentication failed."]
    # Same timing class: every failure verifies a hash (a dummy one for an
    # unknown user); none answers in a fraction of the others' time.
    slow, fast = max(times.values()), min(times.values())
    assert slow < 3.0 and fast > slow / 3, times
    # Master SASL from the trusted network with the right secret works
    # (the proxy's own front end), the wrong one fails the same way.
    r = raw(p.port, source="127.0.0.1")
    assert r.cmd("b", f'AUTHENTICATE PLAIN {plain("alice@example.com", user, "nope")}') == \
        ["b NO [AUTHENTICATIONFAILED] Authentication failed."]
    r.close()


def test_no_smuggling_with_proxy_protocol(one_proxy):
    c = one_proxy
    p = c.proxies[0]
    r = raw(p.port)
    # A PROXY v2 header from the client is not a PROXY header here: the
    # port does not take one, so it is an (invalid) command.
    hdr = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0x00, 0x0c])
           + socket.inet_aton("6.6.6.6") + socket.inet_aton("7.7.7.7") + b"\x01\xbb\x01\xbb")
    r.send(hdr + b"\r\n")
    r.send('i ID ("x-originating-ip" "6.6.6.6" "x-originating-port" "666")\r\n')
    r.until("i")
    r.send("x XCLIENT ADDR=6.6.6.6\r\n")
    assert r.until("x")[-1].startswith("x BAD")
    r.login("alice@example.com")
    # After login the commands go to the backend, which trusts the proxy
    # but takes forwarding fields only before login.
    r.cmd("j", 'ID ("x-originating-ip" "6.6.6.6")')
    assert r.cmd("y", "XCLIENT ADDR=6.6.6.6")[-1].startswith("y BAD")
    r.cmd("z", "LOGOUT")
    be = c.backend_of("alice@example.com")
    assert be.logins() == [("alice@example.com", f"127.0.0.3:{r.port}")], be.logins()
    assert "6.6.6.6" not in be.server.log()


def test_no_smuggling_with_id_forwarding(cluster):
    c = cluster
    c.start_backends()
    p = c.add_proxy(remote_proxy=False, top=TOP)
    c.account("alice@example.com")
    r = raw(p.port)
    r.send('i ID ("x-originating-ip" "6.6.6.6" "x-originating-port" "666")\r\n')
    r.until("i")
    r.login("alice@example.com")
    r.cmd("j", 'ID ("x-originating-ip" "6.6.6.6")')
    r.cmd("z", "LOGOUT")
    be = c.backend_of("alice@example.com")
    assert be.logins() == [("alice@example.com", "127.0.0.3")], be.logins()
    assert "6.6.6.6" not in be.server.log()


def test_preauth_garbage_literals_and_long_lines_cut(one_proxy):
    p = one_proxy.proxies[0]
    r = raw(p.port)
    for i in range(9):
        assert " BAD " in r.cmd(f"g{i}", "BLAH")[-1]
    r.send("g9 BLAH\r\n")
    lines = []
    with pytest.raises(EOFError):
        while True:
            lines.append(r.line())
    assert any("BYE" in l for l in lines), lines

    r = raw(p.port)
    r.send("l LOGIN {100000}\r\n")
    assert r.line().startswith("l NO [TOOBIG]")
    r.send("m LOGIN {100000+}\r\n")
    lines = []
    with pytest.raises(EOFError):
        while True:
            lines.append(r.line())
    assert lines and lines[-1].startswith("* BYE"), lines

    r = raw(p.port)
    r.send(b"a NOOP " + b"x" * 200000 + b"\r\n")
    lines = []
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            lines.append(r.line())
    assert any("BYE" in l for l in lines), lines
    # Nothing of this reached a backend.
    for b in one_proxy.backends:
        assert "login as" not in b.server.log()


class Silent:
    """Accepts connections (the kernel does) and never says a word."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.host = host
        self.imap_port = self.imap_plain_port = self.sock.getsockname()[1]
        self.lmtp_port = self.lmtp_pp_port = self.imap_port
        self.pop3_port = self.pop3_plain_port = self.imap_port


def test_backend_that_never_greets(cluster):
    c = cluster
    c.start_backends()
    silent = Silent("127.0.0.5")
    p = c.add_proxy(connect_timeout="2s", backends=[silent])
    c.account("alice@example.com")
    r = raw(p.port)
    t0 = time.monotonic()
    lines = r.cmd("a", "LOGIN alice@example.com pw-alice@example.com")
    took = time.monotonic() - t0
    assert lines[-1].startswith("a NO [UNAVAILABLE]"), lines
    assert 1.5 < took < 4, took
    with pytest.raises(EOFError):
        r.line() and r.line()


def test_silent_backend_marked_down_and_avoided(cluster):
    c = cluster
    c.start_backends()
    silent = Silent("127.0.0.5")
    be = c.backends[0]
    p = c.add_proxy(connect_timeout="1s", backends=[silent, be])
    p.server.wait_log("backend 127.0.0.5", timeout=10)
    p.server.wait_log("is down", timeout=10)
    for i in range(6):
        u = f"u{i}@example.com"
        c.account(u)
        t0 = time.monotonic()
        m = p.login(u)
        m.logout()
        assert time.monotonic() - t0 < 1.0
    assert p.metric("sora_proxy_backend_up", server="imap", protocol="imap", backend=f"127.0.0.5:{silent.imap_port}") == 0
