"""IMAP on sora-backend with real clients (imaplib, raw sockets): login in
every form, mailbox commands, SELECT/FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE,
APPEND, IDLE push from LMTP and from another session, and bad input."""
import base64
import imaplib
import re
import socket
import threading
import time

import pytest

from sorafix.imap import simple_message
from sorafix.lmtp import dot_stuff


def _b64(s):
    return base64.b64encode(s.encode()).decode()


# ---- login ----------------------------------------------------------------

def test_login_forms(imap_backend):
    b = imap_backend.start(imap_extra='master_username = "admin"\nmaster_password = "m-pw"\n'
                           'master_sasl_username = "proxy"\nmaster_sasl_password = "sasl-pw"\n')
    b.account("bob@example.com", "robert@example.com")

    # LOGIN with the primary address and with an alias; +detail stripped.
    for name, pw in [("bob@example.com", "pw-bob@example.com"),
                     ("robert@example.com", "pw-robert@example.com"),
                     ("bob+lists@example.com", "pw-bob@example.com")]:
        c = b.login(name, pw)
        typ, data = c.capability()
        assert b"IDLE" in data[0] and b"UIDPLUS" in data[0]
        c.logout()

    # Wrong password and unknown user get the same reply.
    r = b.raw()
    a = r.cmd("a", 'LOGIN bob@example.com wrong')
    u = r.cmd("u", 'LOGIN nobody@example.com wrong')
    assert a[-1] == "a NO [AUTHENTICATIONFAILED] Authentication failed."
    assert u[-1] == "u NO [AUTHENTICATIONFAILED] Authentication failed."
    # AUTHENTICATE PLAIN with an initial response (SASL-IR) ...
    ok = r.cmd("p", "AUTHENTICATE PLAIN " + _b64("\0bob@example.com\0pw-bob@example.com"))
    assert ok[-1].startswith("p OK [CAPABILITY "), ok
    r.close()
    # ... and with a continuation.
    r = b.raw()
    r.send("p AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send(_b64("\0bob@example.com\0pw-bob@example.com") + "\r\n")
    assert r.until("p")[-1].startswith("p OK"), "continuation login"
    r.close()
    # Cancelled exchange.
    r = b.raw()
    r.send("c AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send("*\r\n")
    assert r.until("c")[-1].startswith("c BAD")
    r.close()

    # Master user: "user*master" with the master password.
    c = b.login("bob@example.com*admin", "m-pw")
    c.select("INBOX")
    c.logout()
    assert "master login as bob@example.com" in b.server.log()
    r = b.raw()
    assert r.cmd("m", 'LOGIN "bob@example.com*admin" wrong')[-1].startswith("m NO [AUTHENTICATIONFAILED]")
    r.close()

    # Master SASL from a trusted network (127.0.0.1 is trusted by default).
    r = b.raw()
    ok = r.cmd("s", "AUTHENTICATE PLAIN " + _b64("bob@example.com\0proxy\0sasl-pw"))
    assert ok[-1].startswith("s OK"), ok
    # Acting for another user with a normal password is refused.
    r2 = b.raw()
    bad = r2.cmd("s", "AUTHENTICATE PLAIN " + _b64("bob@example.com\0robert@example.com\0pw-robert@example.com"))
    assert bad[-1] == "s NO [AUTHENTICATIONFAILED] Authentication failed."
    r.close()
    r2.close()


def test_guide_authentication_master_sasl_refused_outside_allowed_networks(imap_backend):
    from sorafix.common import free_port
    import urllib.request
    mport = free_port()
    b = imap_backend.start(imap_extra='master_sasl_username = "proxy"\nmaster_sasl_password = "sasl-pw"\n'
                           'master_sasl_allowed_networks = ["10.99.0.0/16"]\n'
                           f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    b.account("bob@example.com")
    r = b.raw()
    resp = r.cmd("s", "AUTHENTICATE PLAIN " + _b64("bob@example.com\0proxy\0sasl-pw"))
    # Exactly like a wrong password.
    assert resp[-1] == "s NO [AUTHENTICATIONFAILED] Authentication failed.", resp
    r.login("bob@example.com")
    r.cmd("x", "FROOB")
    r.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    assert 'sora_logins_total{protocol="imap",result="failed"} 1' in text, text
    assert 'sora_logins_total{protocol="imap",result="success"} 1' in text, text
    assert 'sora_protocol_errors_total{protocol="imap"} 1' in text, text


def test_logindisabled_without_tls(imap_backend):
    # 127.0.0.1 is not trusted here, so nothing waives the TLS rule.
    b = imap_backend.start(insecure_auth=False, top='trusted_networks = ["10.0.0.0/8"]\n')
    b.account("bob@example.com")
    r = b.raw()
    assert "LOGINDISABLED" in r.greeting and "AUTH=PLAIN" not in r.greeting
    resp = r.cmd("a", "LOGIN bob@example.com pw-bob@example.com")
    assert resp[-1].startswith("a NO [PRIVACYREQUIRED]"), resp
    r.close()


def test_plaintext_login_from_trusted_network(imap_backend):
    # sora-proxy terminates TLS and logs in over the internal network:
    # trusted_networks (default: loopback) may use plaintext login.
    b = imap_backend.start(insecure_auth=False)
    b.account("bob@example.com")
    r = b.raw()
    assert "AUTH=PLAIN" in r.greeting and "LOGINDISABLED" not in r.greeting
    r.login("bob@example.com")
    r.close()


def test_master_sasl_decided_on_the_proxy_not_the_client(imap_backend):
    # With a PROXY header the client address is the forwarded one, but
    # master SASL is allowed because the proxy that connected is trusted.
    b = imap_backend.start(imap_extra='master_sasl_username = "proxy"\n'
                           'master_sasl_password = "sasl-pw"\n'
                           'master_sasl_allowed_networks = ["127.0.0.0/8"]\n'
                           '[servers.imap.proxy_protocol]\nenabled = true\n'
                           'trusted_proxies = ["127.0.0.0/8"]\n')
    b.account("bob@example.com")
    import socket
    from sorafix.imap import RawImap
    s = socket.create_connection(("127.0.0.1", b.imap_port), timeout=10)
    s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 143\r\n")
    r = RawImap(s)
    ok = r.cmd("s", "AUTHENTICATE PLAIN " + _b64("bob@example.com\0proxy\0sasl-pw"))
    assert ok[-1].startswith("s OK"), ok
    r.close()
    time.sleep(0.2)
    assert "master login as bob@example.com from 203.0.113.9" in b.server.log()


def test_id_forwarding_only_from_trusted(imap_backend):
    b = imap_backend.start(top='trusted_networks = ["10.0.0.0/8"]\n')
    b.account("bob@example.com")
    r = b.raw()
    r.cmd("i", 'ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "4242")')
    r.login("bob@example.com")
    r.close()
    time.sleep(0.2)
    assert "192.0.2.7" not in b.server.log()


# ---- mailboxes ----------------------------------------------------------------

def test_mailbox_commands(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message())   # creates the defaults
    c = b.login("bob@example.com")
    typ, data = c.list()
    names = [d.decode() for d in data]
    assert any('"INBOX"' in n or n.endswith(" INBOX") for n in names), names
    assert any("\\Sent" in n and "Sent" in n for n in names), names
    assert c.create("Work/Projects")[0] == "OK"
    typ, data = c.list('""', "Work*")
    assert len(data) == 2, data
    assert b"\\HasChildren" in [d for d in data if d.endswith(b'"Work"')][0]
    assert c.create("Work")[0] == "NO"
    assert c.rename("Work", "Jobs")[0] == "OK"
    typ, data = c.list('""', "Jobs/%")
    assert data[0].endswith(b'"Jobs/Projects"'), data
    typ, data = c.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
    assert typ == "OK" and b"MESSAGES 1" in data[0] and b"UNSEEN 1" in data[0], data
    assert c.delete("Jobs/Projects")[0] == "OK"
    assert c.subscribe("Jobs")[0] == "OK"
    typ, data = c.lsub('""', "*")
    assert any(d.endswith(b'"Jobs"') for d in data), data
    # Non-ASCII names travel as modified UTF-7.
    assert c.create("&ZeVnLIqe-")[0] == "OK"
    typ, data = c.list('""', "&ZeVnLIqe-")
    assert data and data[0].endswith(b'"&ZeVnLIqe-"'), data
    assert c.select("Nope")[0] == "NO"
    typ, data = c._simple_command("STATUS", "INBOX", "(SIZE HIGHESTMODSEQ)")
    assert typ == "OK"
    c.logout()


# ---- messages -------------------------------------------------------------------

def _fill(b, n, to="bob@example.com"):
    for i in range(n):
        b.deliver(to, simple_message(subject=f"msg {i}", body=f"body number {i}\r\n"))


def test_select_fetch_store_search_expunge(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 5)
    c = b.login("bob@example.com")
    typ, data = c.select("INBOX")
    assert data == [b"5"]
    assert c.untagged_responses.get("RECENT") == [b"5"]
    typ, data = c.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK"
    assert len([d for d in data if isinstance(d, bytes) or isinstance(d, tuple)]) == 5
    typ, data = c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert data[0][1] == b"Subject: msg 1\r\n\r\n", data
    typ, data = c.fetch("3", "(BODY[TEXT])")
    assert data[0][1] == b"body number 2\r\n", data
    # BODY[] set \Seen: FLAGS come back with it.
    assert b"\\Seen" in data[0][0] or b"\\Seen" in b"".join(x if isinstance(x, bytes) else x[0] for x in data)
    typ, data = c.fetch("3", "(FLAGS)")
    assert b"\\Seen" in data[0]
    typ, data = c.fetch("1", "(BODY.PEEK[]<0.10>)")
    assert data[0][1] == b"Return-Pa"[:9] or len(data[0][1]) == 10
    typ, data = c.store("1:2", "+FLAGS", "(\\Deleted $Work)")
    assert typ == "OK" and b"\\Deleted" in data[0]
    typ, data = c.search(None, "DELETED")
    assert data == [b"1 2"], data
    typ, data = c.search(None, "SUBJECT", '"msg 4"')
    assert data == [b"5"], data
    typ, data = c.search(None, "BODY", "number")
    assert data == [b"1 2 3 4 5"], data
    typ, data = c.uid("SEARCH", "KEYWORD", "$work")
    assert len(data[0].split()) == 2
    typ, data = c.expunge()
    assert data == [b"1", b"1"], data
    typ, data = c.fetch("1:*", "(UID)")
    assert len(data) == 3
    c.close()
    typ, data = c.select("INBOX", readonly=True)
    assert data == [b"3"]
    assert c.store("1", "+FLAGS", "\\Seen")[0] == "NO"
    c.logout()


def test_copy_move_uidplus(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 3)
    c = b.login("bob@example.com")
    c.create("Archive2")
    c.select("INBOX")
    typ, data = c.uid("COPY", "1:2", "Archive2")
    assert typ == "OK"
    # imaplib files the tagged OK's response code under its name.
    copyuid = c.untagged_responses.pop("COPYUID")[-1]
    assert re.fullmatch(rb"\d+ 1:2 1:2", copyuid), copyuid
    typ, data = c._simple_command("MOVE", "3", "Archive2")
    assert typ == "OK"
    assert c.untagged_responses.get("EXPUNGE") == [b"3"]
    assert c.copy("1", "Missing")[0] == "NO"
    typ, data = c.select("Archive2")
    assert data == [b"3"]
    c.logout()


def test_append_and_toobig(imap_backend):
    b = imap_backend.start(imap_extra='append_limit = "1mb"\n')
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message())
    c = b.login("bob@example.com")
    msg = simple_message(subject="appended", body="x" * 200000 + "\r\n").encode()
    typ, data = c.append("INBOX", "(\\Seen $Done)", imaplib.Time2Internaldate(time.time()), msg)
    assert typ == "OK" and b"APPENDUID" in data[0], data
    c.select("INBOX")
    typ, data = c.fetch("2", "(FLAGS RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == msg
    assert b"\\Seen" in data[0][0] and b"$Done" in data[0][0]
    # Over APPENDLIMIT: refused before the literal is sent.
    r = b.raw()
    r.login("bob@example.com")
    r.send("t APPEND INBOX {2000000}\r\n")
    line = r.line()
    assert line.startswith("t NO [TOOBIG]"), line
    assert r.cmd("n", "NOOP")[-1].startswith("n OK")
    assert c.append("Nope", None, None, b"Subject: x\r\n\r\nx\r\n")[0] == "NO"
    r.close()
    c.logout()


def test_two_sessions_see_each_other(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 3)
    one = b.raw()
    one.login("bob@example.com")
    one.cmd("s", "SELECT INBOX")
    two = b.login("bob@example.com")
    two.select("INBOX")
    two.store("2", "+FLAGS", "\\Flagged")
    two.store("1", "+FLAGS", "\\Deleted")
    two.expunge()
    time.sleep(0.3)
    lines = one.cmd("n", "NOOP")
    text = "\n".join(lines)
    assert "* 1 EXPUNGE" in text, lines
    # "one" selected first, so the three messages are \Recent there.
    assert re.search(r"\* 1 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\)", text), lines
    two.logout()
    one.close()


def test_change_visible_at_the_next_command_at_once(imap_backend):
    """A change made by one session is seen by another session of the
    same backend at its very next command, without waiting for the
    notification to come back through PostgreSQL (imaptest works two
    connections in turn like this)."""
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 2)
    one, two = b.raw(), b.raw()
    one.login("bob@example.com")
    two.login("bob@example.com")
    one.cmd("s", "SELECT INBOX")
    two.cmd("s", "SELECT INBOX")
    for i in range(60):
        op = "+FLAGS" if i % 2 == 0 else "-FLAGS"
        two.cmd(f"t{i}", f"STORE 1 {op} (\\Flagged)")
        lines = one.cmd(f"n{i}", "CHECK")
        assert any(l.startswith("* 1 FETCH") for l in lines), (i, lines)
    one.close()
    two.close()


def test_idle_push_from_lmtp_and_session(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 1)
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    r.send("i IDLE\r\n")
    assert r.line() == "+ idling"
    t0 = time.monotonic()
    b.deliver("bob@example.com", simple_message(subject="pushed"))
    r.sock.settimeout(5)
    line = r.line()
    latency = time.monotonic() - t0
    assert line == "* 2 EXISTS", line
    assert latency < 1.0, latency
    # Both messages are \Recent in this session: it selected first.
    assert r.line() == "* 2 RECENT"
    # A flag change by another session arrives as FETCH.
    other = b.login("bob@example.com")
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Answered")
    line = r.line()
    assert re.match(r"\* 1 FETCH \(UID 1 FLAGS \(\\Answered", line), line
    r.send("DONE\r\n")
    assert r.line() == "i OK Idle completed."
    other.logout()
    r.close()


# ---- bad input ------------------------------------------------------------------------

def test_bad_input(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 2)
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    for cmd in ["FETCH 1 (FLAGS", "FETCH 0 FLAGS", "FETCH 1:x FLAGS", "FETCH 99 FLAGS",
                "STORE 1 +FLAGS (\\Bogus)", "SEARCH FROOB", "FETCH 1 BODY[1.MIME.X]",
                "COPY", "UID NOPE 1", "SELECT"]:
        resp = r.cmd("b", cmd)
        assert resp[-1].startswith("b BAD"), (cmd, resp)
    r.send(b"x FETCH 1 (\xff\xfe)\r\n")
    assert r.until("x")[-1].startswith("x BAD")
    r.send(b"y FETCH 1 \x00\r\n")
    assert r.until("y")[-1].startswith("y BAD")
    r.send("z SEARCH TEXT {99999999999}\r\n")
    assert r.until("z")[-1].startswith("z NO [TOOBIG]")
    assert r.cmd("n", "NOOP")[-1].startswith("n OK")
    r.close()
    assert b.server.proc.poll() is None


def test_curl_fetches_by_uid(imap_backend):
    import shutil
    import subprocess
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    b = imap_backend.start()
    b.account("bob@example.com")
    b.deliver("bob@example.com", simple_message(subject="via curl", body="curl body\r\n"))
    out = subprocess.run(["curl", "-s", "--max-time", "15",
                          f"imap://127.0.0.1:{b.imap_port}/INBOX;UID=1",
                          "-u", "bob@example.com:pw-bob@example.com"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out
    assert b"Subject: via curl" in out.stdout and b"curl body" in out.stdout


def test_imap4rev2_mode(imap_backend):
    """ENABLE IMAP4rev2 (RFC 9051): no \\Recent/RECENT, no UNSEEN code,
    SEARCH answers with ESEARCH, mailbox names are UTF-8."""
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 3)
    r = b.raw()
    assert "IMAP4rev2" in r.greeting
    r.login("bob@example.com")
    assert r.cmd("e", "ENABLE IMAP4rev2")[0] == "* ENABLED IMAP4rev2"
    sel = r.cmd("s", "SELECT INBOX")
    assert "* 3 EXISTS" in sel and not any("RECENT" in l or "UNSEEN" in l for l in sel), sel
    f = r.cmd("f", "FETCH 1 FLAGS")
    assert "\\Recent" not in f[0], f
    srch = r.cmd("q", "SEARCH ALL")
    assert srch[0] == '* ESEARCH (TAG "q") ALL 1:3', srch
    usrch = r.cmd("u", "UID SEARCH SUBJECT nothing-matches")
    assert usrch[0] == '* ESEARCH (TAG "u") UID', usrch
    assert r.cmd("c", 'CREATE "Müll"')[-1].startswith("c OK")
    lst = r.cmd("l", 'LIST "" "M*"')
    assert lst[0].endswith('"Müll"'), lst
    r.close()
    # A rev1 client sees the same mailbox in modified UTF-7.
    c = b.login("bob@example.com")
    typ, data = c.list('""', "M*")
    assert data[0].endswith(b'"M&APw-ll"'), data
    c.logout()


def test_idle_push_from_another_backend_process(imap_backend, sora_servers):
    """Two sora-backend processes on one database: a delivery through the
    second reaches a client idling on the first within a second."""
    from sorafix.common import free_port
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 1)
    lmtp2 = free_port()
    cfg2 = (f'hostname = "mx2.test"\nevent_loops = 1\nworker_threads = 2\n'
            + b.pg.config_block(b.dbname)
            + f'[storage]\nbackend = "fs"\nfs_path = "{b.blobs}"\n'
            f'[uploader]\npath = "{b.staging}2"\n'
            f'[servers.lmtp]\naddr = "127.0.0.1:{lmtp2}"\n')
    sora_servers("sora-backend", cfg2, [lmtp2], name="backend2")
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    r.send("i IDLE\r\n")
    assert r.line() == "+ idling"
    import smtplib
    t0 = time.monotonic()
    with smtplib.LMTP("127.0.0.1", lmtp2, timeout=15) as l:
        l.sendmail("s@example.org", ["bob@example.com"], simple_message(subject="via 2").encode())
    r.sock.settimeout(5)
    assert r.line() == "* 2 EXISTS"
    assert time.monotonic() - t0 < 1.0
    r.send("DONE\r\n")
    r.until("i")
    r.close()


def test_fetch_memory_limit_keeps_session(imap_backend):
    """A BINARY section larger than session_memory_limit: NO [LIMIT], and
    the session goes on."""
    b = imap_backend.start(imap_extra='session_memory_limit = "64kb"\n')
    b.account("bob@example.com")
    big = base64.encodebytes(b"\x01" * 300000).replace(b"\n", b"\r\n").decode()
    msg = ("From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + big)
    b.deliver("bob@example.com", msg)
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    resp = r.cmd("f", "FETCH 1 BINARY.PEEK[1]")
    assert resp[-1].startswith("f NO [LIMIT]"), resp[-1]
    # BODY[] streams from the store and is not limited by it.
    r.send("g FETCH 1 BODY.PEEK[]\r\n")
    head = r.line()
    n = int(re.search(r"\{(\d+)\}$", head).group(1))
    assert n > 300000
    r.read_exact(n)
    assert r.until("g")[-1].startswith("g OK")
    r.close()


def test_qresync_resync_returns_exactly_the_changes(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 6)
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("e", "ENABLE QRESYNC")
    sel = r.cmd("s", "SELECT INBOX")
    uidvalidity = re.search(r"UIDVALIDITY (\d+)", "\n".join(sel)).group(1)
    modseq = int(re.search(r"HIGHESTMODSEQ (\d+)", "\n".join(sel)).group(1))
    r.cmd("l", "LOGOUT")
    r.close()
    # Another session changes things: flags on 2 and 5, expunges 3.
    c = b.login("bob@example.com")
    c.select("INBOX")
    c.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    c.uid("STORE", "5", "+FLAGS", "(\\Seen)")
    c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.logout()
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("e", "ENABLE QRESYNC")
    sel = r.cmd("s", f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:6))")
    vanished = [l for l in sel if l.startswith("* VANISHED")]
    fetches = [l for l in sel if l.startswith("* ") and " FETCH " in l]
    assert vanished == ["* VANISHED (EARLIER) 3"], sel
    assert len(fetches) == 2, sel
    assert any("UID 2 " in f and "\\Flagged" in f for f in fetches), fetches
    assert any("UID 5 " in f and "\\Seen" in f for f in fetches), fetches
    # CHANGEDSINCE on FETCH gives the same two.
    f = r.cmd("f", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert [l for l in f if l.startswith("* VANISHED")] == ["* VANISHED (EARLIER) 3"], f
    assert len([l for l in f if l.startswith("* ") and " FETCH " in l]) == 2, f
    r.close()


def test_rehash_on_login(imap_backend):
    """A cheaper stored bcrypt hash is upgraded when the user logs in over
    IMAP (the check runs on a worker)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    b = imap_backend.start()
    weak = "{BLF-CRYPT}" + crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    b.admin.ok("accounts", "create", "--email", "old@example.com", "--hash-import", weak)
    before = b.sql("SELECT password_hash FROM credentials WHERE address = 'old@example.com'")
    assert "$04$" in before
    c = b.login("old@example.com", "secret")
    c.logout()
    after = b.sql("SELECT password_hash FROM credentials WHERE address = 'old@example.com'")
    assert after != before and "$04$" not in after, after
    c = b.login("old@example.com", "secret")
    c.logout()
    # Cost 10 is an operator's choice, not a weakness: it stays.
    ten = "{BLF-CRYPT}" + crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024))
    b.admin.ok("accounts", "create", "--email", "ten@example.com", "--hash-import", ten)
    before = b.sql("SELECT password_hash FROM credentials WHERE address = 'ten@example.com'")
    assert "$10$" in before
    b.login("ten@example.com", "secret").logout()
    assert b.sql("SELECT password_hash FROM credentials WHERE address = 'ten@example.com'") == before


def test_fetch_tells_new_mail_but_never_expunges(imap_backend):
    """RFC 3501 §7.4.1: during FETCH/STORE/SEARCH the server may send EXISTS
    and flag changes, never EXPUNGE; the next NOOP brings the EXPUNGE."""
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 3)
    one = b.raw()
    one.login("bob@example.com")
    one.cmd("s", "SELECT INBOX")
    two = b.login("bob@example.com")
    two.select("INBOX")
    two.store("1", "+FLAGS", "\\Deleted")
    two.expunge()
    two.logout()
    b.deliver("bob@example.com", simple_message(subject="new"))
    time.sleep(0.3)
    f = one.cmd("f", "FETCH 1 (FLAGS)")
    assert not any("EXPUNGE" in l for l in f), f
    assert "* 4 EXISTS" in f, f
    n = one.cmd("n", "NOOP")
    assert "* 1 EXPUNGE" in n, n
    # UID FETCH may send it at once.
    three = b.login("bob@example.com")
    three.select("INBOX")
    three.store("1", "+FLAGS", "\\Deleted")
    three.expunge()
    three.logout()
    time.sleep(0.3)
    u = one.cmd("u", "UID FETCH 1:* (FLAGS)")
    assert "* 1 EXPUNGE" in u, u
    one.close()


def test_commands_pipelined_after_login(imap_backend):
    """Commands sent in the same write as LOGIN / AUTHENTICATE wait for the
    login to finish and then run logged in, in order."""
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, 2)
    r = b.raw()
    r.send("a LOGIN bob@example.com pw-bob@example.com\r\nb SELECT INBOX\r\nc FETCH 2 (UID)\r\n")
    assert r.until("a")[-1].startswith("a OK")
    assert r.until("b")[-1].startswith("b OK [READ-WRITE]")
    out = r.until("c")
    assert out[-1].startswith("c OK") and out[0].startswith("* 2 FETCH (UID 2)"), out
    r.close()
    r = b.raw()
    r.send("p AUTHENTICATE PLAIN\r\n")
    assert r.line() == "+ "
    r.send(_b64("\0bob@example.com\0pw-bob@example.com") + "\r\nq NOOP\r\n")
    assert r.until("p")[-1].startswith("p OK")
    assert r.until("q")[-1].startswith("q OK")
    r.close()


def test_multiappend_of_1000_messages(imap_backend):
    """One MULTIAPPEND of 1,000 messages (4 MB in all, more than the 1 MiB a
    command may otherwise hold): all stored, in order, with one
    APPENDUID; the messages stream to one spool."""
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw(timeout=60)
    r.login("bob@example.com")
    msgs = [simple_message(subject=f"m{i}", body="y" * 4000 + "\r\n").encode() for i in range(1000)]
    cmd = b"m APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs) + b"\r\n"
    r.send(cmd)
    resp = r.until("m")
    assert resp[-1].startswith("m OK [APPENDUID "), resp[-1]
    assert re.search(r"APPENDUID \d+ 1:1000\]", resp[-1]), resp[-1]
    sel = r.cmd("s", "EXAMINE INBOX")
    assert "* 1000 EXISTS" in sel, sel
    r.send("f FETCH 1000 BODY.PEEK[]\r\n")
    head = r.line()
    n = int(re.search(r"\{(\d+)\}$", head).group(1))
    assert r.read_exact(n) == msgs[999]
    r.until("f")
    r.close()


MULTIPART = (b"From: \"Ann Example\" <ann@example.org>\r\nTo: bob@example.com, \"C, D\" <cd@x.test>\r\n"
             b"Subject: =?utf-8?q?caf=C3=A9?= report\r\nDate: Thu, 3 Dec 2026 10:00:00 +0100\r\n"
             b"Message-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=xyz\r\n\r\n"
             b"--xyz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
             b"--xyz\r\nContent-Type: message/rfc822\r\n\r\n"
             b"From: inner@example.org\r\nSubject: inner\r\n\r\ninner body\r\n"
             b"--xyz--\r\n")


def test_stored_envelope_and_bodystructure(imap_backend):
    """ENVELOPE and BODYSTRUCTURE are rendered once when a row is written
    (LMTP, APPEND, COPY) and sent as stored; a row without them (written
    before migration 0005) is rendered from the JSON, identically."""
    b = imap_backend.start()
    acc = b.account("bob@example.com")
    b.deliver("bob@example.com", MULTIPART)
    c = b.login("bob@example.com")
    c.append("INBOX", None, None, MULTIPART)
    c.select("INBOX")
    c.create("Other")
    assert c.uid("COPY", "1:2", "Other")[0] == "OK"
    missing = b.sql(f"SELECT count(*) FROM messages WHERE account_id = {acc}"
                    " AND (imap_envelope IS NULL OR imap_bodystructure IS NULL)")
    assert missing == "0"

    def fetch(box):
        c.select(box)
        typ, data = c.fetch("1:2", "(ENVELOPE BODYSTRUCTURE BODY)")
        assert typ == "OK"
        return [d[0] + d[1] + d[2] if isinstance(d, tuple) else d for d in data]

    stored = {box: fetch(box) for box in ("INBOX", "Other")}
    for box in ("INBOX", "Other"):
        assert b"(\"cd@x.test\"" not in stored[box][0]  # addresses are split, not raw
        assert b'"ann" "example.org"' in stored[box][0]
        assert b'"message" "rfc822"' in stored[box][0]
    b.sql(f"UPDATE messages SET imap_envelope = NULL, imap_bodystructure = NULL"
          f" WHERE account_id = {acc}")
    for box in ("INBOX", "Other"):
        assert fetch(box) == stored[box]
    c.logout()


def test_copies_of_one_message_share_their_text(imap_backend):
    # Migration 0009: the decoded text SEARCH BODY reads is stored once per
    # message, not once per recipient (each copy's trace lines differ, so
    # the body hashes do), and COPY keeps the link. Rows from before keep
    # finding their text by the body hash.
    b = imap_backend.start()
    rcpts = ["t1@example.com", "t2@example.com", "t3@example.com"]
    accs = [b.account(r) for r in rcpts]
    msg = simple_message(subject="shared", body="the zebrafinch sings\r\n")
    c = b.connect()
    c.cmd("LHLO client.test")
    assert c.cmd("MAIL FROM:<sender@example.org>")[0].startswith("250")
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>")[0].startswith("250")
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(msg.encode()))
    assert [c.reply()[0][:3] for _ in rcpts] == ["250"] * 3
    assert b.sql("SELECT count(*) FROM message_contents WHERE text_body LIKE '%zebrafinch%'") == "1"
    assert b.sql("SELECT count(DISTINCT content_hash) || ' ' || count(DISTINCT text_key) "
                 "FROM messages WHERE subject = 'shared'") == "3 1"
    for r in rcpts:
        c = b.login(r)
        c.select("INBOX")
        assert c.search(None, "BODY", "zebrafinch") == ("OK", [b"1"]), r
        assert c.copy("1", "Archive")[0] == "OK"
        c.select("Archive")
        assert c.search(None, "BODY", "zebrafinch") == ("OK", [b"1"]), r
        c.logout()
    # A row written before 0009 (no text_key) is found by its body hash.
    b.sql(f"UPDATE messages SET text_key = NULL WHERE account_id = {accs[0]}")
    b.sql(f"INSERT INTO message_contents (content_hash, text_body) SELECT content_hash, "
          f"'an old kingfisher' FROM messages WHERE account_id = {accs[0]} "
          f"ON CONFLICT DO NOTHING")
    c = b.login(rcpts[0])
    c.select("INBOX")
    assert c.search(None, "BODY", "kingfisher") == ("OK", [b"1"])
    assert c.search(None, "BODY", "zebrafinch") == ("OK", [b""])
    c.logout()
