"""POP3 on sora-backend with Python's poplib and a raw-socket client:
every RFC 1939 command, CAPA, STLS, AUTH PLAIN, UIDL = IMAP UID, the
UPDATE state (DELE + QUIT vs DELE + disconnect, a concurrent IMAP
expunge), exact sizes with bare LF, byte-stuffing, bad input, the memory
limit, master logins and XCLIENT."""
import base64
import imaplib
import poplib
import re
import socket
import ssl
import time
import urllib.request

import pytest

from sorafix.common import free_port, wait_for
from sorafix.imap import simple_message
from sorafix.pop3 import unstuff


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def _imap_uids(b, email):
    c = b.login(email)
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "ALL")
    c.logout()
    return [int(x) for x in data[0].split()]


def _fill(b, email, n, body="Hello.\r\n"):
    msgs = []
    for i in range(n):
        m = simple_message(subject=f"m{i}", body=f"{body}line {i}\r\n")
        b.deliver(email, m)
        msgs.append(m.encode())
    return msgs


def _stored(b, email):
    """Bodies as stored (the LMTP trace header included), UID order."""
    acc = int(b.sql(f"SELECT account_id FROM credentials WHERE address = '{email}'"))
    return [b.body(acc, h) for uid, h, size, mb in b.messages(acc) if mb == "INBOX"]


# ---- the transaction state --------------------------------------------------------

def test_every_command_with_poplib(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 3)
    stored = _stored(b, "bob@example.com")
    p = b.pop("bob@example.com")
    count, octets = p.stat()
    assert count == 3 and octets == sum(len(m) for m in stored)
    resp, listing, _ = p.list()
    assert resp.startswith(b"+OK 3 messages")
    assert [l.split() for l in listing] == [[str(i + 1).encode(), str(len(m)).encode()]
                                           for i, m in enumerate(stored)]
    assert p.list(2).split()[2] == str(len(stored[1])).encode()
    for i, m in enumerate(stored):
        resp, lines, n = p.retr(i + 1)
        assert resp.startswith(b"+OK")
        assert b"\r\n".join(lines) + b"\r\n" == m
        assert n == len(m)
    resp, lines, _ = p.top(1, 0)
    head = stored[0].split(b"\r\n\r\n", 1)[0]
    assert b"\r\n".join(lines) == head + b"\r\n"
    resp, lines, _ = p.top(1, 1)
    assert lines[-1] == b"Hello."
    resp, uidl, _ = p.uidl()
    uids = _imap_uids(b, "bob@example.com")
    assert [l.split()[1] for l in uidl] == [str(u).encode() for u in uids]
    assert p.uidl(3).split()[2] == str(uids[2]).encode()
    assert p.noop().startswith(b"+OK")
    assert p.dele(2).startswith(b"+OK")
    assert p.stat() == (2, len(stored[0]) + len(stored[2]))
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.retr(2)
    with pytest.raises(poplib.error_proto):
        p.list(2)
    assert [l.split()[0] for l in p.list()[1]] == [b"1", b"3"]
    assert p.rset().startswith(b"+OK")
    assert p.stat()[0] == 3
    caps = p.capa()
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION",
            "EXPIRE"} <= set(caps)
    assert "USER" not in caps and "SASL" not in caps and "STLS" not in caps
    assert p.quit().startswith(b"+OK")
    # Nothing was deleted (RSET), and RETR set \Seen.
    c = b.login("bob@example.com")
    c.select("INBOX")
    typ, data = c.search(None, "SEEN")
    assert data[0].split() == [b"1", b"2", b"3"]
    c.logout()


def test_capa_before_login_follows_the_state(pop3_backend):
    b = pop3_backend.start()
    r = b.raw_pop()
    assert r.greeting.startswith("+OK")
    r.send("CAPA\r\n")
    assert r.line().startswith("+OK")
    caps = r.multi().decode().split("\r\n")
    assert "USER" in caps and "SASL PLAIN" in caps and "STLS" not in caps
    assert "EXPIRE NEVER" in caps and "IMPLEMENTATION Sora" in caps
    assert r.cmd("QUIT").startswith("+OK")
    r.close()


def test_uidl_stable_across_sessions_and_equal_to_imap_uids(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 5)
    p = b.pop("bob@example.com")
    first = [l.split()[1] for l in p.uidl()[1]]
    p.dele(1)
    p.dele(4)
    p.quit()
    _fill(b, "bob@example.com", 1)
    p = b.pop("bob@example.com")
    second = [l.split()[1] for l in p.uidl()[1]]
    p.quit()
    assert second[:3] == [first[1], first[2], first[4]]
    assert [int(x) for x in second] == _imap_uids(b, "bob@example.com")


def test_dele_quit_vs_dele_disconnect(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 4)
    # DELE and then the connection drops: nothing is deleted, and the
    # maildrop lock goes with the session.
    r = b.raw_pop()
    r.login("bob@example.com")
    assert r.cmd("DELE 1").startswith("+OK")
    assert r.cmd("DELE 2").startswith("+OK")
    r.close()
    time.sleep(0.3)
    p = b.pop("bob@example.com")
    assert p.stat()[0] == 4
    assert p.dele(1).startswith(b"+OK") and p.dele(3).startswith(b"+OK")
    resp = p.quit()
    assert b"2 messages deleted" in resp, resp
    p = b.pop("bob@example.com")
    assert p.stat()[0] == 2
    p.quit()
    # The deletion is an IMAP expunge: the rows are expunged, not gone.
    acc = int(b.sql("SELECT account_id FROM credentials WHERE address = 'bob@example.com'"))
    assert b.sql(f"SELECT count(*) FROM messages WHERE account_id = {acc} AND "
                 "expunged_at IS NOT NULL AND flags & 8 = 8") == "2"


def test_concurrent_imap_expunge(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 3)
    p = b.pop("bob@example.com")
    assert p.stat()[0] == 3
    c = b.login("bob@example.com")
    c.select("INBOX")
    c.store("2", "+FLAGS", "\\Deleted")
    c.expunge()
    # The session still shows it (RFC 1939 has no way to tell), RETR still
    # works from the two-phase expunge, and DELE + QUIT is fine.
    assert p.stat()[0] == 3
    assert p.retr(2)[0].startswith(b"+OK")
    p.dele(2)
    p.dele(3)
    resp = p.quit()
    assert resp.startswith(b"+OK") and b"2 messages deleted" in resp
    typ, data = c.noop()
    c.logout()
    p = b.pop("bob@example.com")
    assert p.stat()[0] == 1
    p.quit()


def test_in_use(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    p = b.pop("bob@example.com")
    r = b.raw_pop()
    assert r.cmd("USER bob@example.com").startswith("+OK")
    resp = r.cmd("PASS pw-bob@example.com")
    assert resp.startswith("-ERR [IN-USE]"), resp
    # Still in the AUTHORIZATION state: a later try succeeds.
    p.quit()
    r.login("bob@example.com")
    assert r.cmd("STAT").startswith("+OK 0 0")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()


# ---- sizes and byte-stuffing ------------------------------------------------------

def test_sizes_bare_lf_dots_and_no_final_newline(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    r = b.raw()
    r.login("bob@example.com")
    bodies = [
        b"Subject: lf\n\n.starts with a dot\nbare\nlf\n..two dots\n.\nend",
        b"Subject: crlf\r\n\r\n.\r\n.\r\n..\r\nx\r",
        b"Subject: mixed\r\n\nline\r\r\n.hidden\n",
        b"Subject: dot last\r\n\r\n.",
    ]
    # A raw APPEND: imaplib would turn bare LF and CR into CRLF.
    for i, m in enumerate(bodies):
        r.send(f"a{i} APPEND INBOX {{{len(m)}+}}\r\n".encode() + m + b"\r\n")
        assert r.until(f"a{i}")[-1].startswith(f"a{i} OK")
    r.close()
    p = b.pop("bob@example.com")
    sizes = [int(l.split()[1]) for l in p.list()[1]]
    for i, m in enumerate(bodies):
        want = re.sub(rb"(?<!\r)\n", b"\r\n", m)
        if not want.endswith(b"\r\n"):
            want += b"\r\n"
        resp, lines, octets = p.retr(i + 1)
        assert octets == sizes[i] == len(want), (i, octets, sizes[i], len(want))
        assert b"\r\n".join(lines) + b"\r\n" == want, i
    p.quit()
    # On the wire: every line that starts with "." has another one.
    r = b.raw_pop()
    r.login("bob@example.com")
    assert r.cmd("RETR 1").startswith("+OK")
    raw = r.multi()
    assert b"\r\n..starts with a dot\r\n" in raw and b"\r\n...two dots\r\n" in raw
    assert b"\r\n..\r\nend\r\n" in raw
    assert unstuff(raw) == re.sub(rb"(?<!\r)\n", b"\r\n", bodies[0]) + b"\r\n"
    assert r.cmd("TOP 2 1").startswith("+OK")
    assert r.multi() == b"Subject: crlf\r\n\r\n..\r\n"
    r.cmd("QUIT")
    r.close()


# ---- bad input -------------------------------------------------------------------------

def test_bad_input_never_crashes(pop3_backend):
    b = pop3_backend.start(pop3_extra="max_errors = 100\n")
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 2)
    r = b.raw_pop()
    r.login("bob@example.com")
    for cmd in ["RETR abc", "RETR 0", "RETR 99999", "RETR -1", "RETR 1 2", "RETR",
                "RETR 99999999999999999999", "TOP 1", "TOP 1 x", "TOP 1 -1", "DELE 3",
                "LIST 0", "UIDL x", "STAT 1", "FROB", "USER x", "STLS", "AUTH PLAIN"]:
        resp = r.cmd(cmd)
        assert resp.startswith("-ERR"), (cmd, resp)
    r.send(b"A" * 100000 + b"\r\n")
    assert r.line() == "-ERR Command line too long."
    r.send(b"NO\0OP\r\n")
    assert r.line().startswith("-ERR")
    r.send(b"\r\n")
    assert r.line().startswith("-ERR")
    r.send(b"\x00\xff\x01garbage\r\n")
    assert r.line().startswith("-ERR")
    assert r.cmd("NOOP") == "+OK"
    assert r.cmd("STAT").startswith("+OK 2 ")
    r.cmd("QUIT")
    r.close()
    assert b.server.proc.poll() is None


def test_too_many_errors_end_the_session(pop3_backend):
    b = pop3_backend.start(pop3_extra="max_errors = 3\n")
    r = b.raw_pop()
    r.send("FROB\r\nFROB\r\nFROB\r\nNOOP\r\n")
    assert r.line().startswith("-ERR")
    assert r.line().startswith("-ERR")
    assert r.line().startswith("-ERR")
    assert r.line() == "-ERR Too many invalid commands."
    with pytest.raises(EOFError):
        r.line()
    r.close()


def test_memory_limit_keeps_the_session(pop3_backend):
    b = pop3_backend.start(pop3_extra='session_memory_limit = "64kb"\n')
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message(body="small\r\n"))
    b.deliver("bob@example.com", simple_message(body="x" * 76 + "\r\n") * 1 +
              ("y" * 76 + "\r\n") * 4000)
    b.deliver("bob@example.com", simple_message(body="small again\r\n"))
    p = b.pop("bob@example.com")
    assert p.retr(1)[0].startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\].*session_memory_limit"):
        p.retr(2)
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
        p.top(2, 10)
    assert p.retr(3)[0].startswith(b"+OK")
    p.quit()
    wait_for(lambda: "session memory peak" in b.server.log(), what="the peak in the log")


# ---- login --------------------------------------------------------------------------------

def test_auth_plain_with_and_without_initial_response(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com", "robert@example.com")
    r = b.raw_pop()
    assert r.cmd("AUTH").startswith("+OK")
    assert r.multi() == b"PLAIN\r\n"
    assert r.cmd("AUTH PLAIN " + _b64("\0robert@example.com\0pw-robert@example.com")).startswith("+OK")
    assert r.cmd("STAT").startswith("+OK 0 0")
    r.cmd("QUIT")
    r.close()
    r = b.raw_pop()
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd(_b64("\0bob@example.com\0pw-bob@example.com")).startswith("+OK")
    r.cmd("QUIT")
    r.close()
    r = b.raw_pop()
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*") == "-ERR Authentication aborted."
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("!!notbase64") .startswith("-ERR")
    assert r.cmd("AUTH PLAIN " + _b64("\0bob@example.com\0wrong")) == "-ERR [AUTH] Authentication failed."
    assert r.cmd("USER nobody@example.com") == "+OK"
    assert r.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed."
    assert r.cmd("PASS wrong").startswith("-ERR")
    assert r.cmd("AUTH CRAM-MD5").startswith("-ERR")
    r.close()
    # poplib's own helpers.
    p = poplib.POP3("127.0.0.1", b.pop3_port, timeout=10)
    p.user("bob+tag@example.com")
    assert p.pass_("pw-bob@example.com").startswith(b"+OK")
    p.quit()


def test_plaintext_refused_without_tls(pop3_backend):
    # 127.0.0.1 is not trusted here, and insecure_auth is off.
    b = pop3_backend.start(insecure_auth=False, top='trusted_networks = ["10.0.0.0/8"]\n')
    b.account("bob@example.com")
    r = b.raw_pop()
    r.send("CAPA\r\n")
    r.line()
    caps = r.multi()
    assert b"USER" not in caps and b"SASL" not in caps
    assert r.cmd("USER bob@example.com").startswith("-ERR [AUTH] Plaintext authentication disallowed")
    assert r.cmd("AUTH PLAIN " + _b64("\0bob@example.com\0pw-bob@example.com")).startswith("-ERR [AUTH]")
    r.close()


def test_stls(pop3_backend, certs):
    b = pop3_backend.start(insecure_auth=False, top='trusted_networks = ["10.0.0.0/8"]\n',
                           certs=certs)
    b.account("bob@example.com")
    p = poplib.POP3("127.0.0.1", b.pop3_port, timeout=10)
    assert "STLS" in p.capa() and "USER" not in p.capa()
    ctx = ssl.create_default_context(cafile=certs.ca_crt)
    p.stls(context=ctx)
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps and "SASL" in caps
    p.user("bob@example.com")
    assert p.pass_("pw-bob@example.com").startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()
    # A command sent in the same packet as STLS is never executed.
    r = b.raw_pop()
    r.send("STLS\r\nUSER bob@example.com\r\n")
    assert r.line().startswith("+OK")
    tls = ctx.wrap_socket(r.sock, server_hostname="localhost")
    tls.sendall(b"NOOP\r\n")
    assert tls.recv(100).startswith(b"-ERR")
    tls.close()


def test_capa_after_login_without_tls_has_no_stls(pop3_backend, certs):
    b = pop3_backend.start(insecure_auth=True, certs=certs)
    b.account("bob@example.com")
    p = poplib.POP3("127.0.0.1", b.pop3_port, timeout=10)
    assert {"STLS", "USER", "SASL"} <= set(p.capa())
    p.user("bob@example.com")
    p.pass_("pw-bob@example.com")
    caps = p.capa()
    assert "STLS" not in caps and "USER" not in caps and "SASL" not in caps, caps
    with pytest.raises(poplib.error_proto):
        p._shortcmd("STLS")
    p.quit()


def test_master_user_and_master_sasl(pop3_backend):
    from sorafix.common import free_port as fp
    mport = fp()
    b = pop3_backend.start(pop3_extra='master_username = "admin"\nmaster_password = "m-pw"\n'
                           'master_sasl_username = "proxy"\nmaster_sasl_password = "sasl-pw"\n'
                           f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 1)
    p = b.pop("bob@example.com*admin", "m-pw")
    assert p.stat()[0] == 1
    p.quit()
    assert "master login as bob@example.com" in b.server.log()
    r = b.raw_pop()
    assert r.cmd("USER bob@example.com*admin") == "+OK"
    assert r.cmd("PASS wrong") == "-ERR [AUTH] Authentication failed."
    # Master SASL from a trusted network (loopback is trusted by default).
    assert r.cmd("AUTH PLAIN " + _b64("bob@example.com\0proxy\0sasl-pw")).startswith("+OK")
    r.cmd("QUIT")
    r.close()
    # Acting for another user with a normal password is refused.
    b.account("eve@example.com")
    r = b.raw_pop()
    assert r.cmd("AUTH PLAIN " + _b64("bob@example.com\0eve@example.com\0pw-eve@example.com")) \
        == "-ERR [AUTH] Authentication failed."
    r.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    assert 'sora_logins_total{protocol="pop3",result="master"} 2' in text, text
    assert 'sora_logins_total{protocol="pop3",result="failed"} 2' in text, text


def test_master_sasl_refused_outside_allowed_networks(pop3_backend):
    b = pop3_backend.start(pop3_extra='master_sasl_username = "proxy"\nmaster_sasl_password = "sasl-pw"\n'
                           'master_sasl_allowed_networks = ["10.99.0.0/16"]\n')
    b.account("bob@example.com")
    r = b.raw_pop()
    assert r.cmd("AUTH PLAIN " + _b64("bob@example.com\0proxy\0sasl-pw")) \
        == "-ERR [AUTH] Authentication failed."
    r.close()


def test_xclient_only_from_trusted(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    r = b.raw_pop()
    assert r.cmd("XCLIENT ADDR=192.0.2.7 PORT=4711 SESSION=abc123") == "+OK"
    r.login("bob@example.com")
    r.cmd("QUIT")
    r.close()
    log = b.server.log()
    assert "client 192.0.2.7:4711 (forwarded by 127.0.0.1" in log and "session abc123" in log
    assert "login as bob@example.com from 192.0.2.7" in log
    r = b.raw_pop()
    assert r.cmd("XCLIENT ADDR=not-an-ip").startswith("-ERR")
    r.close()


def test_xclient_refused_from_untrusted(pop3_backend):
    b = pop3_backend.start(top='trusted_networks = ["10.0.0.0/8"]\n')
    b.account("bob@example.com")
    r = b.raw_pop()
    assert r.cmd("XCLIENT ADDR=192.0.2.7").startswith("-ERR")
    r.login("bob@example.com")
    r.cmd("QUIT")
    r.close()
    log = b.server.log()
    assert "192.0.2.7" not in log.replace("XCLIENT ADDR=192.0.2.7", "")


def test_pipelining(pop3_backend):
    b = pop3_backend.start()
    b.account("bob@example.com")
    _fill(b, "bob@example.com", 3)
    r = b.raw_pop()
    r.send("USER bob@example.com\r\nPASS pw-bob@example.com\r\nSTAT\r\nLIST\r\nUIDL 2\r\n"
           "RETR 1\r\nTOP 2 0\r\nDELE 3\r\nSTAT\r\nQUIT\r\n")
    assert r.line() == "+OK"
    assert r.line().startswith("+OK Logged in, 3 messages")
    assert r.line().startswith("+OK 3 ")
    assert r.line().startswith("+OK 3 messages")
    assert len(r.multi().split(b"\r\n")) == 4
    assert r.line().startswith("+OK 2 ")
    assert r.line().startswith("+OK")
    assert b"Subject: m0" in r.multi()
    assert r.line() == "+OK"
    assert b"Subject: m1" in r.multi()
    assert r.line().startswith("+OK Message 3 deleted")
    assert r.line().startswith("+OK 2 ")
    assert r.line().startswith("+OK Sora POP3 server signing off (1 messages deleted)")
    r.close()


def test_large_listing_and_connection_limits(pop3_backend):
    b = pop3_backend.start(pop3_extra="max_connections = 2\n")
    b.account("bob@example.com")
    c = b.login("bob@example.com")
    for i in range(100):
        c.append("INBOX", None, None, f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    c.logout()
    p = b.pop("bob@example.com")
    resp, lines, _ = p.uidl()
    assert len(lines) == 100
    resp, lines, _ = p.list()
    assert len(lines) == 100
    q = b.raw_pop()
    try:
        r = b.raw_pop()
        assert r.greeting.startswith("-ERR [SYS/TEMP] Too many connections")
        r.close()
    except (EOFError, ConnectionError):
        pass
    q.close()
    p.quit()
