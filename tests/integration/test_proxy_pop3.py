"""pop3_proxy: poplib through HAProxy -> sora-proxy -> sora-backend, on the
backend's POP3 pre-auth ops table; affinity with IMAP; identical failures;
XCLIENT forwarding without PROXY; a maildrop in use is passed on."""
import poplib
import socket
import smtplib
import time

import pytest

from sorafix.imap import simple_message

USERS = [f"p{i}@example.com" for i in range(8)]


class SourcePOP3(poplib.POP3):
    def __init__(self, host, port, source="127.0.0.3", timeout=15):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        s = socket.socket()
        s.settimeout(timeout)
        s.bind((self._source, 0))
        s.connect((self.host, self.port))
        self.source_port = s.getsockname()[1]
        return s


def deliver(c, u, subject):
    be = c.backends[0]
    with smtplib.LMTP(be.host, be.lmtp_port, timeout=30) as l:
        l.sendmail("s@example.net", [u], simple_message(subject=subject).encode())


@pytest.fixture
def pop3_cluster(cluster):
    cluster.start_backends()
    cluster.add_proxy()
    cluster.add_proxy()
    for u in USERS:
        cluster.account(u)
    return cluster


def test_poplib_through_haproxy(pop3_cluster):
    c = pop3_cluster
    c.start_haproxy(pop3=True)
    u = USERS[0]
    deliver(c, u, "one")
    deliver(c, u, "two")
    p = SourcePOP3("127.0.0.1", c.haproxy_port)
    p.user(u)
    r = p.pass_("pw-" + u)
    assert r.startswith(b"+OK"), r
    assert p.stat()[0] == 2
    lines = p.retr(1)[1]
    assert b"Subject: one" in b"\r\n".join(lines)
    port = p.source_port
    p.quit()
    be = c.backend_of(u)
    assert (u, f"127.0.0.3:{port}") in be.logins(), be.logins()


def test_pop3_affinity_with_imap_and_spread(pop3_cluster):
    c = pop3_cluster
    seen = set()
    for u in USERS:
        m = c.proxies[0].login(u)
        m.logout()
        imap_be = c.backend_of(u)
        for px in c.proxies:
            p = poplib.POP3("127.0.0.1", px.pop3_port, timeout=15)
            p.user(u)
            p.pass_("pw-" + u)
            p.quit()
        n = sum(1 for lu, _ in imap_be.logins() if lu == u)
        assert n == 3, (u, imap_be.name, n)
        seen.add(imap_be.name)
    assert seen == {"be1", "be2"}


def test_pop3_failures_identical_and_pipelining(pop3_cluster):
    c = pop3_cluster
    px = c.proxies[0]
    replies = []
    for user, pw in ((USERS[0], "wrong"), ("nobody@example.com", "wrong")):
        s = socket.create_connection(("127.0.0.1", px.pop3_port), timeout=10)
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(f"USER {user}\r\nPASS {pw}\r\n".encode())
        f.readline()
        replies.append(f.readline())
        s.close()
    assert replies[0] == replies[1] == b"-ERR [AUTH] Authentication failed.\r\n", replies
    # Commands pipelined behind PASS reach the backend in order.
    u = USERS[1]
    s = socket.create_connection(("127.0.0.1", px.pop3_port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"USER {u}\r\nPASS pw-{u}\r\nSTAT\r\nNOOP\r\nQUIT\r\n".encode())
    got = [f.readline() for _ in range(5)]
    assert got[1].startswith(b"+OK Logged in"), got
    assert got[2].startswith(b"+OK 0 0"), got
    assert got[3].startswith(b"+OK") and got[4].startswith(b"+OK"), got


def test_pop3_xclient_forwarding_and_in_use(cluster):
    c = cluster
    c.start_backends()
    px = c.add_proxy(remote_proxy=False)
    u = USERS[0]
    c.account(u)
    p1 = SourcePOP3("127.0.0.1", px.pop3_port, source="127.0.0.4")
    p1.user(u)
    p1.pass_("pw-" + u)
    be = c.backend_of(u)
    assert (u, "127.0.0.4") in [(lu, cl.split(":")[0]) for lu, cl in be.logins()], be.logins()
    # The maildrop is locked by p1: the backend's [IN-USE] reaches the client.
    p2 = poplib.POP3("127.0.0.1", px.pop3_port, timeout=15)
    p2.user(u)
    with pytest.raises(poplib.error_proto) as e:
        p2.pass_("pw-" + u)
    assert b"[IN-USE]" in e.value.args[0], e.value.args
    p1.quit()
