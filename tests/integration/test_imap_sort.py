"""SORT (RFC 5256), ESORT (RFC 5267 §3) and SORT=DISPLAY (RFC 5957) on
sora-backend, with imaplib (and raw sockets where the exact bytes of an
ESEARCH reply matter): every sort key, REVERSE, ties in sequence order,
several criteria, search criteria after the charset, UID SORT, the
charset argument and its errors, ESORT's RETURN options and SAVE, and the
security guide's cap (500 results for a sort by a text key, enforced by
the database query, said with [LIMIT]; ARRIVAL is not capped below 1,000).

The expected orders are written out by hand from the messages below."""
import imaplib
import re

import pytest

# Five messages. Bodies of different lengths make SIZE: 1 3 2 5 4.
# A sixth message is appended first and expunged, so UID = sequence + 1.
MSGS = [
    # seq 1
    dict(date="Fri, 03 Jan 2020 10:00:00 +0000", internal='"01-Jan-2021 00:00:00 +0000"',
         frm="Zed <zed@x.org>", to="amy@x.org", cc="carl@x.org", subject="Re: banana",
         body=1000),
    # seq 2
    dict(date="Wed, 01 Jan 2020 10:00:00 +0000", internal='"03-Jan-2021 00:00:00 +0000"',
         frm="adam@x.org", to="Carl <carl@x.org>", cc="bob@x.org", subject="apple", body=3000),
    # seq 3: no Date (DATE falls back to the internal date), no Cc, a
    # display name with an encoded word whose local part sorts last.
    dict(date=None, internal='"02-Jan-2020 12:00:00 +0000"',
         frm="=?utf-8?q?=C3=A9mile?= <zz@x.org>", to="bob@x.org", cc=None,
         subject="[list] Fwd: cherry (fwd)", body=2000),
    # seq 4
    dict(date="Thu, 02 Jan 2020 10:00:00 +0000", internal='"02-Jan-2021 00:00:00 +0000"',
         frm="Bea <bea@x.org>", to="dan@x.org", cc="amy@x.org", subject="APPLE", body=5000),
    # seq 5: same Date as 4, same internal date as 1, a group in To.
    dict(date="Thu, 02 Jan 2020 10:00:00 +0000", internal='"01-Jan-2021 00:00:00 +0000"',
         frm="bea@x.org", to="Team: eve@x.org, ann@x.org;", cc="dan@x.org",
         subject="Re: [Fwd: Banana]", body=4000),
]


def _message(m):
    h = f"From: {m['frm']}\r\nTo: {m['to']}\r\nSubject: {m['subject']}\r\n"
    if m["cc"]:
        h += f"Cc: {m['cc']}\r\n"
    if m["date"]:
        h += f"Date: {m['date']}\r\n"
    return (h + "\r\n" + "x" * m["body"] + "\r\n").encode()


@pytest.fixture
def sorted_box(imap_backend):
    b = imap_backend.start()
    b.account("bob@example.com")
    c = b.login("bob@example.com")
    assert c.append("INBOX", None, None, b"Subject: gone\r\n\r\nx\r\n")[0] == "OK"
    c.select("INBOX")
    c.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    c.expunge()
    for m in MSGS:
        typ, data = c.append("INBOX", None, m["internal"], _message(m))
        assert typ == "OK", data
    c.select("INBOX")
    yield b, c
    c.logout()


def _sort(c, criteria, *search, charset="UTF-8", uid=False):
    if uid:
        typ, data = c.uid("SORT", criteria, charset, *(search or ("ALL",)))
    else:
        typ, data = c.sort(criteria, charset, *(search or ("ALL",)))
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def test_capabilities(sorted_box):
    b, c = sorted_box
    caps = c.capability()[1][0].decode().split()
    for cap in ("SORT", "SORT=DISPLAY", "ESORT"):
        assert cap in caps, caps
    # CONTEXT=SORT (UPDATE/PARTIAL on SORT) is not built, so not offered.
    assert "CONTEXT=SORT" not in caps, caps


@pytest.mark.parametrize("criteria,want", [
    ("(ARRIVAL)", [3, 1, 5, 4, 2]),
    ("(REVERSE ARRIVAL)", [2, 4, 1, 5, 3]),         # ties stay in sequence order
    ("(DATE)", [2, 4, 5, 3, 1]),                    # 3 by its internal date
    ("(REVERSE DATE)", [1, 3, 4, 5, 2]),
    ("(SIZE)", [1, 3, 2, 5, 4]),
    ("(REVERSE SIZE)", [4, 5, 2, 3, 1]),
    ("(SUBJECT)", [2, 4, 1, 5, 3]),                 # base subjects, case-insensitive
    ("(REVERSE SUBJECT)", [3, 1, 5, 2, 4]),
    ("(FROM)", [2, 4, 5, 1, 3]),                    # local parts: adam bea bea zed zz
    ("(TO)", [1, 3, 2, 4, 5]),                      # amy bob carl dan, the group "Team"
    ("(CC)", [3, 4, 2, 1, 5]),                      # no Cc sorts first
    ("(REVERSE CC)", [5, 1, 2, 4, 3]),
    ("(DISPLAYFROM)", [2, 4, 5, 3, 1]),             # adam@x.org Bea bea@x.org émile Zed
    ("(REVERSE DISPLAYFROM)", [1, 3, 5, 4, 2]),
    ("(DISPLAYTO)", [1, 3, 2, 4, 5]),               # amy@ bob@ Carl dan@ Team
    ("(SUBJECT REVERSE SIZE)", [4, 2, 5, 1, 3]),
    ("(subject reverse date)", [4, 2, 1, 5, 3]),     # key names in any case
    ("(FROM ARRIVAL)", [2, 5, 4, 1, 3]),
])
def test_sort_keys(sorted_box, criteria, want):
    b, c = sorted_box
    assert _sort(c, criteria) == want


def test_search_criteria_charset_and_uid(sorted_box):
    b, c = sorted_box
    assert _sort(c, "(SUBJECT)", "FROM", "bea") == [4, 5]
    assert _sort(c, "(DATE)", "NOT", "SUBJECT", "apple", charset="US-ASCII") == [5, 3, 1]
    assert _sort(c, "(SIZE)", "2:4") == [3, 2, 4]
    # A non-ASCII search string under UTF-8 (the decoded display name),
    # as a literal (8-bit quoted strings need UTF8=ACCEPT).
    c.literal = "\u00e9mile".encode()
    assert _sort(c, "(ARRIVAL)", "FROM") == [3]
    # UID SORT: the same order, as UIDs (= sequence + 1 here); the
    # search part still takes sequence numbers, and UID sets with UID.
    assert _sort(c, "(SUBJECT)", uid=True) == [3, 5, 2, 6, 4]
    assert _sort(c, "(REVERSE SIZE)", "UID", "2:4", uid=True) == [3, 4, 2]
    assert _sort(c, "(ARRIVAL)", "1:2", uid=True) == [2, 3]
    # Nothing matches: an empty SORT response.
    typ, data = c.sort("(ARRIVAL)", "UTF-8", "SUBJECT", "nothing-like-this")
    assert typ == "OK" and data == [b""], data


def test_errors(sorted_box):
    b, c = sorted_box
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    resp = r.cmd("a", "SORT (SUBJECT) ISO-8859-1 ALL")
    assert resp[-1].startswith("a NO [BADCHARSET (US-ASCII UTF-8)]"), resp
    for tag, cmd in (("b", "SORT (BOGUS) UTF-8 ALL"),       # unknown key
                     ("c", "SORT () UTF-8 ALL"),            # no criteria
                     ("d", "SORT (REVERSE) UTF-8 ALL"),      # REVERSE without key
                     ("e", "SORT (REVERSE REVERSE DATE) UTF-8 ALL"),
                     ("f", "SORT (SUBJECT) UTF-8"),          # no search key
                     ("g", "SORT SUBJECT UTF-8 ALL"),        # not a list
                     ("h", "SORT (SUBJECT) UTF-8 BOGUSKEY"),
                     ("i", "SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 ALL"),  # CONTEXT=SORT
                     ("j", "SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL")):
        resp = r.cmd(tag, cmd)
        assert resp[-1].startswith(tag + " BAD"), (cmd, resp)
        assert not any(l.startswith("* SORT") for l in resp), resp
    # The session goes on after the BADs.
    assert r.cmd("k", "SORT (SIZE) UTF-8 ALL") == ["* SORT 1 3 2 5 4", "k OK Sort completed."]
    r.close()
    # Not valid without a selected mailbox.
    r = b.raw()
    r.login("bob@example.com")
    assert r.cmd("n", "SORT (SIZE) UTF-8 ALL")[-1].startswith("n BAD")
    r.close()


def test_esort(sorted_box):
    b, c = sorted_box
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    assert r.cmd("e", "SORT RETURN (MIN MAX COUNT ALL) (REVERSE ARRIVAL) UTF-8 ALL") == [
        '* ESEARCH (TAG "e") MIN 2 MAX 3 COUNT 5 ALL 2,4,1,5,3', "e OK Sort completed."]
    # Ascending neighbours in sort order become ranges, nothing else does.
    assert r.cmd("f", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL") == [
        '* ESEARCH (TAG "f") ALL 2,4,1,5,3', "f OK Sort completed."]
    assert r.cmd("g", "SORT RETURN () (DATE) UTF-8 ALL") == [
        '* ESEARCH (TAG "g") ALL 2,4:5,3,1', "g OK Sort completed."]
    assert r.cmd("u", "UID SORT RETURN (MIN MAX COUNT ALL) (REVERSE ARRIVAL) UTF-8 ALL") == [
        '* ESEARCH (TAG "u") UID MIN 3 MAX 4 COUNT 5 ALL 3,5,2,6,4', "u OK Sort completed."]
    assert r.cmd("c", "SORT RETURN (COUNT) (SIZE) US-ASCII SUBJECT none") == [
        '* ESEARCH (TAG "c") COUNT 0', "c OK Sort completed."]
    # SAVE alone: no ESEARCH, and "$" is the set of the result.
    assert r.cmd("v", "SORT RETURN (SAVE) (SUBJECT) UTF-8 FROM bea") == ["v OK Sort completed."]
    assert r.cmd("w", "SEARCH $") == ["* SEARCH 4 5", "w OK Search completed."]
    # "$" in SORT's own search part.
    assert r.cmd("x", "SORT (REVERSE SIZE) UTF-8 $") == ["* SORT 4 5", "x OK Sort completed."]
    r.close()


def test_condstore_modseq(sorted_box):
    b, c = sorted_box
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    r.cmd("t", "STORE 3 +FLAGS.SILENT (\\Flagged)")
    resp = r.cmd("m", "SORT (SIZE) UTF-8 MODSEQ 1")
    sort = [l for l in resp if l.startswith("* SORT")]
    m = re.fullmatch(r"\* SORT 1 3 2 5 4 \(MODSEQ (\d+)\)", sort[0])
    assert m and resp[-1] == "m OK Sort completed.", resp
    resp = r.cmd("n", "FETCH 3 (MODSEQ)")
    assert "MODSEQ (%s)" % m.group(1) in resp[0], resp
    r.close()


def test_sort_cap(imap_backend):
    """600 messages: a sort by a text key (FROM) returns the first 500 in
    sort order and says [LIMIT]; ARRIVAL (a column with an index) and
    ESORT's COUNT/MIN/MAX are not cut."""
    b = imap_backend.start()
    b.account("bob@example.com")
    r = b.raw(timeout=60)
    r.login("bob@example.com")
    # From local parts run backwards: seq i has u(600 - i).
    msgs = [("From: u%03d@x.org\r\nSubject: m%d\r\n\r\nx\r\n" % (600 - i, i)).encode()
            for i in range(1, 601)]
    r.send(b"a APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs) + b"\r\n")
    assert r.until("a")[-1].startswith("a OK [APPENDUID "), "append"
    r.cmd("s", "SELECT INBOX")

    resp = r.cmd("f", "SORT (FROM) UTF-8 ALL")
    nums = [int(x) for x in resp[0].split()[2:]]
    assert nums == list(range(600, 100, -1)), nums[:10]
    assert resp[-1] == "f OK [LIMIT] Sort completed (only the first 500 results are returned).", resp[-1]
    # REVERSE: the other end, still capped.
    resp = r.cmd("g", "UID SORT (REVERSE FROM) UTF-8 ALL")
    assert [int(x) for x in resp[0].split()[2:]] == list(range(1, 501))
    assert resp[-1].startswith("g OK [LIMIT]"), resp[-1]
    # Under the cap after a narrower search: no LIMIT.
    resp = r.cmd("h", "SORT (FROM) UTF-8 1:400")
    assert [int(x) for x in resp[0].split()[2:]] == list(range(400, 0, -1))
    assert resp[-1] == "h OK Sort completed."
    # ARRIVAL is cheap: all 600.
    resp = r.cmd("i", "SORT (ARRIVAL) UTF-8 ALL")
    assert [int(x) for x in resp[0].split()[2:]] == list(range(1, 601))
    assert resp[-1] == "i OK Sort completed.", resp[-1]
    # ESORT: COUNT and MAX are exact past the cap, so no LIMIT...
    assert r.cmd("j", "SORT RETURN (MIN MAX COUNT) (FROM) UTF-8 ALL") == [
        '* ESEARCH (TAG "j") MIN 600 MAX 1 COUNT 600', "j OK Sort completed."]
    # ...ALL is cut.
    resp = r.cmd("k", "SORT RETURN (ALL) (FROM) UTF-8 ALL")
    assert resp[0] == '* ESEARCH (TAG "k") ALL ' + ",".join(str(i) for i in range(600, 100, -1)), resp[0][:80]
    assert resp[-1].startswith("k OK [LIMIT]"), resp[-1]
    r.close()


def test_migration_0008_fixes_group_keys_of_old_rows(imap_backend):
    """Rows written before 0008 sorted a group by its first member. The
    migration recomputes the keys of rows whose field starts with a plain
    group name, to what delivery now writes, and leaves the rest alone."""
    import os
    from sorafix.common import ROOT
    b = imap_backend.start()
    b.account("bob@example.com")
    msgs = [
        "From: undisclosed-recipients:;\r\nTo: Team Two: a@x.org, b@y.org;\r\nCc: c@x.org\r\n",
        'From: x@y.org\r\nTo: "Quoted Team": a@x.org;\r\n',
        "From: x@y.org\r\nTo: =?utf-8?q?T=C3=A9am?=: a@x.org;\r\n",
        "From: Name <n@x.org>\r\nTo: plain@x.org\r\n",
    ]
    for m in msgs:
        b.deliver("bob@example.com", m + "Subject: s\r\n\r\nbody\r\n")
    cols = "sort_from, sort_display_from, sort_to, sort_display_to, sort_cc"
    q = f"SELECT uid, {cols} FROM messages ORDER BY uid"
    fresh = b.rows(q)
    assert fresh[0][1:] == ["undisclosed-recipients", "undisclosed-recipients", "Team Two",
                            "Team Two", "c"], fresh
    assert fresh[1][3:5] == ["Quoted Team", "Quoted Team"], fresh
    assert fresh[2][3:5] == ["T\u00e9am", "T\u00e9am"], fresh
    # As an older version wrote them (any value that differs will do).
    b.sql(f"UPDATE messages SET ({cols}) = ('old', 'old', 'old', 'old', 'old')")
    with open(os.path.join(ROOT, "backend/store/migrations/0008_sort_groups.sql")) as f:
        b.sql(f.read())
    after = b.rows(q)
    # Row 1: the group fields restored, Cc (not a group) untouched.
    assert after[0][1:] == ["undisclosed-recipients", "undisclosed-recipients", "Team Two",
                            "Team Two", "old"], after
    # Quoted and encoded group names, and plain addresses: left alone.
    for row in after[1:]:
        assert row[1:] == ["old"] * 5, after


def test_esort_modseq_of_min_max(sorted_box):
    """RFC 7162 §3.1.5: with MIN/MAX alone the MODSEQ is that of the
    messages returned, with ALL or COUNT that of every match."""
    b, c = sorted_box
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    r.cmd("t", "STORE 4 +FLAGS.SILENT (\\Flagged)")     # 4: the highest modseq now

    def ms(seq):
        return re.search(r"MODSEQ \((\d+)\)", " ".join(r.cmd("f", f"FETCH {seq} (MODSEQ)"))).group(1)
    m4, m3, m2 = ms(4), ms(3), ms(2)
    assert int(m4) > max(int(m3), int(m2))
    # REVERSE ARRIVAL: 2 4 1 5 3 -> MIN 2, MAX 3; 4 is not among them.
    resp = [l for l in r.cmd("a", "SORT RETURN (MIN MAX) (REVERSE ARRIVAL) UTF-8 MODSEQ 1")
            if l.startswith("* ESEARCH")]
    assert resp == ['* ESEARCH (TAG "a") MIN 2 MAX 3 MODSEQ %d' % max(int(m2), int(m3))], resp
    resp = [l for l in r.cmd("b", "SORT RETURN (COUNT) (REVERSE ARRIVAL) UTF-8 MODSEQ 1")
            if l.startswith("* ESEARCH")]
    assert resp == ['* ESEARCH (TAG "b") COUNT 5 MODSEQ %s' % m4], resp
    r.close()
