"""CONTEXT=SEARCH (RFC 5267 §4) on sora-backend with raw sockets: updating
searches (ADDTO after new mail over LMTP, REMOVEFROM after another
session's STORE and EXPUNGE, the session's own FETCH \\Seen),
CANCELUPDATE, PARTIAL ranges (also past the 1,000-result cap), the limit
on updating searches, and bad syntax."""
import re
import time

from sorafix.imap import simple_message


def _fill(b, subjects, to="bob@example.com"):
    for s in subjects:
        b.deliver(to, simple_message(subject=s, body=f"body of {s}\r\n"))


def _session(b, mailbox="INBOX"):
    r = b.raw(timeout=15)
    r.login("bob@example.com")
    sel = r.cmd("s", f"SELECT {mailbox}")
    assert sel[-1].startswith("s OK"), sel
    return r


def _idle_until(r, pred, timeout=10.0):
    """IDLE until a line satisfies pred; all lines read, then DONE."""
    r.send("i IDLE\r\n")
    r.sock.settimeout(timeout)
    lines = []
    # IDLE tells what is pending before "+ idling".
    while True:
        line = r.line()
        if line == "+ idling":
            break
        lines.append(line)
    deadline = time.monotonic() + timeout
    while not any(pred(l) for l in lines):
        if time.monotonic() > deadline:
            raise AssertionError("timed out; got %r" % lines)
        lines.append(r.line())
    r.send("DONE\r\n")
    rest = r.until("i")
    assert rest[-1] == "i OK Idle completed.", rest
    return lines + rest[:-1]


def test_capability_advertised(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw()
    caps = r.login("bob@example.com")[-1]
    assert " CONTEXT=SEARCH" in caps, caps
    r.close()


def test_update_addto_from_lmtp_delivery(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["plain 1", "wanted 2"])
    r = _session(b)
    resp = r.cmd("u", "UID SEARCH RETURN (UPDATE) SUBJECT wanted")
    assert resp == ['* ESEARCH (TAG "u") UID ALL 2', "u OK Search completed."], resp
    # A message that does not match: EXISTS, no ESEARCH. Then one that
    # does: EXISTS first, then ADDTO (RFC 5267 §4.3.3).
    b.deliver("bob@example.com", simple_message(subject="plain 3"))
    b.deliver("bob@example.com", simple_message(subject="wanted 4"))
    lines = _idle_until(r, lambda l: l.startswith("* ESEARCH"))
    assert lines[-1] == '* ESEARCH (TAG "u") UID ADDTO (0 4)', lines
    assert "* 4 EXISTS" in lines and lines.index("* 4 EXISTS") < len(lines) - 1, lines
    assert sum(1 for l in lines if l.startswith("* ESEARCH")) == 1, lines
    r.close()


def test_update_removefrom_store_and_expunge_by_another_session(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["a", "b", "c", "d"])
    r = _session(b)
    # Sequence numbers, UNSEEN: all four.
    resp = r.cmd("n", "SEARCH RETURN (UPDATE COUNT) UNSEEN")
    assert resp == ['* ESEARCH (TAG "n") COUNT 4', "n OK Search completed."], resp
    other = b.login("bob@example.com")
    other.select("INBOX")
    # Another session's STORE makes message 2 leave the result ...
    other.store("2", "+FLAGS", "\\Seen")
    lines = _idle_until(r, lambda l: l.startswith("* ESEARCH"))
    assert lines[-1] == '* ESEARCH (TAG "n") REMOVEFROM (0 2)', lines
    assert any(re.match(r"\* 2 FETCH \(UID 2 FLAGS \(\\Seen", l) for l in lines), lines
    # ... and back again.
    other.store("2", "-FLAGS", "\\Seen")
    lines = _idle_until(r, lambda l: l.startswith("* ESEARCH"))
    assert lines[-1] == '* ESEARCH (TAG "n") ADDTO (0 2)', lines
    # EXPUNGE: REMOVEFROM with the sequence number before the EXPUNGE
    # (RFC 5267 §4.3.4).
    other.store("3", "+FLAGS", "\\Deleted")
    other.expunge()
    lines = _idle_until(r, lambda l: l == "* 3 EXPUNGE")
    removes = [i for i, l in enumerate(lines) if l == '* ESEARCH (TAG "n") REMOVEFROM (0 3)']
    assert len(removes) == 1 and removes[0] < lines.index("* 3 EXPUNGE"), lines
    # The kept result is now 1, 2, 3 (was 4): a change to it says so.
    other.store("3", "+FLAGS", "\\Seen")
    lines = _idle_until(r, lambda l: l.startswith("* ESEARCH"))
    assert lines[-1] == '* ESEARCH (TAG "n") REMOVEFROM (0 3)', lines
    other.logout()
    r.close()


def test_own_fetch_seen_and_cancelupdate(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["a", "b", "c"])
    r = _session(b)
    assert r.cmd("u", "UID SEARCH RETURN (UPDATE MIN) UNSEEN") == [
        '* ESEARCH (TAG "u") UID MIN 1', "u OK Search completed."]
    # FETCH BODY[] sets \Seen: the session's own change takes message 1
    # out of the UNSEEN search (UPDATE ignores MIN: all changes are told).
    resp = r.cmd("f", "FETCH 1 BODY[TEXT]")
    assert '* ESEARCH (TAG "u") UID REMOVEFROM (0 1)' in resp, resp
    # Own STORE.
    resp = r.cmd("t", "STORE 1 -FLAGS.SILENT (\\Seen)")
    assert resp == ['* ESEARCH (TAG "u") UID ADDTO (0 1)', "t OK STORE completed."], resp
    # CANCELUPDATE: the tag as a quoted string; then nothing more.
    assert r.cmd("c", 'CANCELUPDATE "u"') == ["c OK Updates cancelled."]
    resp = r.cmd("t2", "STORE 1:3 +FLAGS.SILENT (\\Seen)")
    assert resp == ["t2 OK STORE completed."], resp
    other = b.login("bob@example.com")
    other.select("INBOX")
    other.store("2", "-FLAGS", "\\Seen")
    lines = _idle_until(r, lambda l: l.startswith("* 2 FETCH"))
    assert not any("ESEARCH" in l for l in lines), lines
    # The context is gone: cancelling it again is NO, and the tag may
    # start a new updating search.
    assert r.cmd("c2", 'CANCELUPDATE "u"')[-1].startswith("c2 NO [NONEXISTENT]")
    assert r.cmd("u", "SEARCH RETURN (UPDATE) ALL")[-1] == "u OK Search completed."
    # Unselecting ends every context (RFC 5267 §4.3).
    r.cmd("s2", "SELECT INBOX")
    assert r.cmd("c3", 'CANCELUPDATE "u"')[-1].startswith("c3 NO [NONEXISTENT]")
    other.logout()
    r.close()


def test_partial_ranges(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["m1", "m2", "m3", "m4", "m5"])
    r = _session(b)
    cases = [
        ("SEARCH RETURN (PARTIAL 1:1) ALL", "PARTIAL (1:1 1)"),
        ("SEARCH RETURN (PARTIAL 4:2) ALL", "PARTIAL (2:4 2:4)"),
        ("SEARCH RETURN (PARTIAL 3:100) ALL", "PARTIAL (3:100 3:5)"),
        ("SEARCH RETURN (PARTIAL 6:7) ALL", "PARTIAL (6:7 NIL)"),
        ("SEARCH RETURN (PARTIAL 2:3) 1:2,4:5", "PARTIAL (2:3 2,4)"),
        ("SEARCH RETURN (COUNT PARTIAL 1:2) NOT 1", "COUNT 4 PARTIAL (1:2 2:3)"),
        ("UID SEARCH RETURN (MIN PARTIAL 5:5) ALL", "UID MIN 1 PARTIAL (5:5 5)"),
    ]
    for i, (cmd, want) in enumerate(cases):
        resp = r.cmd(f"p{i}", cmd)
        assert resp == [f'* ESEARCH (TAG "p{i}") {want}', f"p{i} OK Search completed."], (cmd, resp)
    # Positions count live messages: after expunging message 2, position
    # 2 is UID 3.
    r.cmd("d", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd("e", "EXPUNGE")
    assert r.cmd("q", "UID SEARCH RETURN (PARTIAL 2:2) ALL")[0] == '* ESEARCH (TAG "q") UID PARTIAL (2:2 3)'
    r.close()


def test_partial_past_the_result_cap_and_noupdate(imap_backend):
    """1,005 messages: PARTIAL reads past the 1,000-result cap of the
    first query; UPDATE on a result over the cap is refused with
    NOUPDATE, and the search is still answered."""
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw(timeout=60)
    r.login("bob@example.com")
    msgs = [simple_message(subject=f"m{i}", body="x\r\n").encode() for i in range(1005)]
    # At most 1,000 messages per APPEND.
    for tag, part in (("m1", msgs[:1000]), ("m2", msgs[1000:])):
        r.send(tag.encode() + b" APPEND INBOX" +
               b"".join(b" {%d+}\r\n" % len(m) + m for m in part) + b"\r\n")
        assert r.until(tag)[-1].startswith(tag + " OK [APPENDUID "), "append"
    r.cmd("s", "SELECT INBOX")
    resp = r.cmd("p", "UID SEARCH RETURN (COUNT PARTIAL 999:1004) ALL")
    assert resp == ['* ESEARCH (TAG "p") UID COUNT 1005 PARTIAL (999:1004 999:1004)',
                    "p OK Search completed."], resp
    resp = r.cmd("q", "SEARCH RETURN (PARTIAL 1003:2000) ALL")
    assert resp[0] == '* ESEARCH (TAG "q") PARTIAL (1003:2000 1003:1005)', resp
    resp = r.cmd("u", "SEARCH RETURN (UPDATE COUNT) ALL")
    assert resp[0] == '* ESEARCH (TAG "u") COUNT 1005', resp
    assert resp[1].startswith('* NO [NOUPDATE "u"]'), resp
    assert resp[-1].startswith("u OK"), resp
    # Not a context: nothing to cancel.
    assert r.cmd("c", 'CANCELUPDATE "u"')[-1].startswith("c NO")
    r.close()


def test_context_limit(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["a"])
    r = _session(b)
    for i in range(8):
        resp = r.cmd(f"t{i}", "SEARCH RETURN (UPDATE) ALL")
        assert resp == [f'* ESEARCH (TAG "t{i}") ALL 1', f"t{i} OK Search completed."], resp
    resp = r.cmd("t8", "SEARCH RETURN (UPDATE) ALL")
    assert resp[0] == '* ESEARCH (TAG "t8") ALL 1', resp
    assert resp[1] == '* NO [NOUPDATE "t8"] Too many updating searches (at most 8).', resp
    assert resp[2] == "t8 OK Search completed.", resp
    # Cancelling one makes room again.
    assert r.cmd("c", 'CANCELUPDATE "t0" "t1"') == ["c OK Updates cancelled."]
    assert r.cmd("t9", "SEARCH RETURN (UPDATE) ALL") == ['* ESEARCH (TAG "t9") ALL 1',
                                                          "t9 OK Search completed."]
    r.close()


def test_bad_syntax(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    _fill(b, ["a", "b"])
    r = _session(b)
    for i, cmd in enumerate([
            "SEARCH RETURN (PARTIAL 1) ALL",
            "SEARCH RETURN (PARTIAL 1:*) ALL",
            "SEARCH RETURN (PARTIAL *:1) ALL",
            "SEARCH RETURN (PARTIAL 0:1) ALL",
            "SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
            "SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
            "CANCELUPDATE",
            "CANCELUPDATE u",
            "UID CANCELUPDATE \"u\""]):
        resp = r.cmd(f"b{i}", cmd)
        assert resp[-1].startswith(f"b{i} BAD"), (cmd, resp)
    # An updating search's tag may not be used again for another (RFC
    # 5267 §4.3).
    assert r.cmd("u", "SEARCH RETURN (UPDATE) ALL")[-1] == "u OK Search completed."
    assert r.cmd("u", "SEARCH RETURN (UPDATE) SEEN")[-1].startswith("u BAD")
    # Outside the selected state CANCELUPDATE is BAD too.
    r.cmd("c", "UNSELECT")
    assert r.cmd("x", 'CANCELUPDATE "u"')[-1].startswith("x BAD")
    r.close()
