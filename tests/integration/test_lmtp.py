"""LMTP delivery (RFC 2033) against a real sora-backend and PostgreSQL: the
protocol with a raw client, Python's smtplib.LMTP and swaks; what is stored
(byte-exact body, metadata row, upload queue); limits; STARTTLS; XCLIENT.

Postfix relaying into the backend is in test_lmtp_postfix.py, the database
going away in test_lmtp_pgfail.py."""
import contextlib
import hashlib
import os
import re
import smtplib
import ssl
import subprocess
import time

import pytest

from sorafix.common import which
from sorafix.lmtp import LmtpConn, dot_stuff

MSG = (b"From: Sender <sender@remote.test>\r\n"
       b"To: Alice <alice@example.com>\r\n"
       b"Subject: Re: =?utf-8?q?caf=C3=A9?= meeting\r\n"
       b"Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
       b"Message-ID: <m1@remote.test>\r\n"
       b"\r\n"
       b"Hello Alice,\r\n"
       b".a line that starts with a dot\r\n"
       b"..two dots\r\n"
       b"Bye.\r\n")


def prefix_re(sender, rcpt, helo="client.test", addr=r"\[127\.0\.0\.1\]", proto="LMTP"):
    return re.compile(
        rb"Return-Path: <" + re.escape(sender.encode()) + rb">\r\n"
        rb"Delivered-To: " + re.escape(rcpt.encode()) + rb"\r\n"
        rb"Received: from " + re.escape(helo.encode()) + rb" \(" + addr.encode() + rb"\)\r\n"
        rb"\tby mx\.test \(Sora\) with " + proto.encode() + rb" id [0-9a-f]+\r\n"
        rb"\tfor <" + re.escape(rcpt.encode()) + rb">; \w{3}, \d{2} \w{3} \d{4} "
        rb"\d{2}:\d{2}:\d{2} \+0000\r\n")


def split_prefix(body, sender, rcpt, **kw):
    m = prefix_re(sender, rcpt, **kw).match(body)
    assert m, body[:400]
    return body[m.end():]


def send_message(c, sender, rcpts, msg):
    """One transaction; returns (rcpt replies, data replies)."""
    assert c.cmd(f"MAIL FROM:<{sender}>")[0].startswith("250 2.1.0")
    rr = [c.cmd(f"RCPT TO:<{r}>")[0] for r in rcpts]
    accepted = sum(1 for r in rr if r.startswith("250"))
    if accepted == 0:
        assert c.code("DATA") == 503
        return rr, []
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(msg))
    return rr, [c.reply()[0] for _ in range(accepted)]


# ---------------------------------------------------------------- delivery


def test_delivery_is_stored_byte_exact_with_metadata(lmtp_backend):
    b = lmtp_backend
    acc = b.account("alice@example.com")
    b.start()
    c = b.connect()
    assert c.greeting == ["220 mx.test LMTP Sora ready"]
    caps = c.cmd("LHLO client.test")
    assert caps[0] == "250-mx.test"
    assert [l[4:] for l in caps[1:]] == ["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING",
                                         "SIZE 52428800", "SMTPUTF8",
                                         "XCLIENT ADDR PORT HELO LOGIN"]
    rr, dr = send_message(c, "sender@remote.test", ["alice@example.com"], MSG)
    assert rr == ["250 2.1.5 <alice@example.com> OK"]
    assert dr == ["250 2.0.0 <alice@example.com> Saved"]
    assert c.cmd("QUIT") == ["221 2.0.0 mx.test Bye"]

    # Default mailboxes were created on first delivery, with SPECIAL-USE.
    assert sorted(b.rows(f"SELECT name, coalesce(special_use, '') FROM mailboxes "
                         f"WHERE account_id = {acc}")) == sorted(
        [["INBOX", ""], ["Sent", "\\Sent"], ["Drafts", "\\Drafts"], ["Junk", "\\Junk"],
         ["Trash", "\\Trash"], ["Archive", "\\Archive"]])

    [(uid, h, size, mbox)] = b.messages(acc)
    assert (uid, mbox) == (1, "INBOX")
    stored = b.body(acc, h)
    assert split_prefix(stored, "sender@remote.test", "alice@example.com") == MSG
    assert size == len(stored)
    assert subprocess.run(["b2sum", "-l", "256"], input=stored, capture_output=True
                          ).stdout.split()[0].decode() == h

    # from_text/to_text: the decoded value, then a line with the normalised
    # addresses (msg-meta.h); the first line is what the header said.
    row = b.rows("SELECT subject, sent_date, message_id, split_part(from_text, E'\\n', 1), "
                 "split_part(to_text, E'\\n', 1), sort_subject, "
                 "sort_from, sort_display_from, envelope->>'message-id', "
                 "bodystructure->'root'->>'l', encode(raw_headers, 'escape') "
                 f"FROM messages WHERE account_id = {acc}")
    subj, sent, mid, frm, to, ssubj, sfrom, sdisp, env_mid, lines = row[0][:10]
    assert subj == "Re: café meeting" and ssubj == "café meeting"
    assert sent == "2003-07-01 08:52:37+00"
    assert (mid, env_mid) == ("<m1@remote.test>", "<m1@remote.test>")
    assert frm == "Sender <sender@remote.test>" and to == "Alice <alice@example.com>"
    assert (sfrom, sdisp) == ("sender", "Sender")
    assert lines == "4"
    raw_headers = b.sql(f"SELECT encode(raw_headers, 'hex') FROM messages WHERE account_id = {acc}")
    assert bytes.fromhex(raw_headers) == stored[:stored.index(b"\r\n\r\n") + 4]

    # The delivery queued the body for upload with this node's instance id
    # (the uploader takes only those rows): it reaches the fs store intact
    # and leaves staging.
    b.wait_uploaded()
    assert b.objects(acc) == [h]
    with open(os.path.join(b.blobs, h[:2], str(acc), h), "rb") as f:
        assert f.read() == stored
    assert b.staged_files(acc) == []
    # The text is keyed by the message without the trace lines (migration
    # 0009), so every copy of it shares the row.
    text = b.sql(f"SELECT mc.text_body FROM messages m JOIN message_contents mc "
                 f"ON mc.content_hash = m.text_key WHERE m.content_hash = '{h}'")
    assert b.sql(f"SELECT text_key FROM messages WHERE content_hash = '{h}'") == \
        hashlib.sha256(MSG).hexdigest()
    assert "Hello Alice" in text and ".a line that starts with a dot" in text
    assert b.sql(f"SELECT message_count, unseen_count, total_size FROM mailbox_stats s "
                 f"JOIN mailboxes m ON m.id = s.mailbox_id WHERE m.account_id = {acc} "
                 f"AND m.name = 'INBOX'") == f"1|1|{size}"

    log = b.server.log()
    assert re.search(r"proto=lmtp .*delivered: from=<sender@remote.test> rcpt=<alice@example.com> "
                     rf"account={acc} size={size} mailbox=INBOX uid=1", log), log
    assert "Hello Alice" not in log and "café" not in log


@pytest.mark.parametrize("base", ["working directory", "base_dir"])
def test_relative_paths_resolve_against_one_base(lmtp_backend, base):
    # DESIGN.md §6: relative paths resolve against one documented base
    # (base_dir, else the working directory) and are logged at start.
    b = lmtp_backend
    acc = b.account("alice@example.com")
    if base == "base_dir":
        root = os.path.join(b.dir, "base")
        top, blobs, staging = f'base_dir = "{root}"\n', "blobs", "spool/staging"
    else:
        # The defaults, var/blobs and var/staging; the server runs in b.dir.
        root, top, blobs, staging = b.dir, "", None, None
    cfg = b.config(top=top)
    cfg = cfg.replace(f'fs_path = "{b.blobs}"\n', f'fs_path = "{blobs}"\n' if blobs else "")
    cfg = cfg.replace(f'path = "{b.staging}"\n', f'path = "{staging}"\n' if staging else "")
    b.blobs = os.path.join(root, blobs or "var/blobs")
    b.staging = os.path.join(root, staging or "var/staging")
    b.server = b.sora_servers("sora-backend", cfg, [b.port])
    line = next(l for l in b.server.log().splitlines() if "paths: " in l)
    assert f"paths: base {root} ({base}); staging {b.staging}; blobs {b.blobs}; " in line, line
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        assert s.sendmail("a@remote.test", ["alice@example.com"], MSG) == {}
    [(_, h, _, _)] = b.messages(acc)
    b.wait_uploaded()
    assert b.objects(acc) == [h]
    assert split_prefix(b.body(acc, h), "a@remote.test", "alice@example.com") == MSG


def test_fs_store_keeps_one_copy_and_no_cache(lmtp_backend):
    # DESIGN.md §6: with the fs store the staged body is the stored body
    # (no second copy, no upload queued) and there is no local cache.
    b = lmtp_backend
    accs = [b.account(f"u{i}@example.com") for i in range(3)]
    b.start()
    msgs = [MSG.replace(b"m1@remote.test", f"once-{i}@remote.test".encode()) for i in range(12)]
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        for i, m in enumerate(msgs):
            assert s.sendmail("a@remote.test", [f"u{i % 3}@example.com"], m) == {}
    # One message to all three: one copy per recipient (each has its own
    # trace lines), still one file per copy.
    c = b.connect()
    c.cmd("LHLO client.test")
    rr, dr = send_message(c, "a@remote.test", [f"u{i}@example.com" for i in range(3)],
                          MSG.replace(b"m1@", b"all@"))
    assert [r[:3] for r in dr] == ["250"] * 3
    assert b.sql("SELECT count(*) FROM pending_uploads") == "0"
    stored = {}
    for acc in accs:
        for _, h, size, _ in b.messages(acc):
            body = b.body(acc, h)
            assert len(body) == size and body.endswith(
                msgs[int(re.search(rb"once-(\d+)@", body).group(1))]
                if b"once-" in body else MSG.replace(b"m1@", b"all@"))
            stored[(acc, h)] = body
    assert len(stored) == 15
    # Every regular file under the work directory holding mail: exactly the
    # stored objects, each one inode with one link, nothing in staging or
    # in the (default, relative) cache directory.
    files = {}
    for root, _, names in os.walk(b.dir):
        for n in names:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if not os.path.isfile(p) or n.endswith((".toml", ".log")):
                continue
            with open(p, "rb") as f:
                if b"Hello Alice" in f.read():
                    files[p] = st
    assert sorted(files) == sorted(os.path.join(b.blobs, h[:2], str(acc), h)
                                   for acc, h in stored), sorted(files)
    assert all(st.st_nlink == 1 for st in files.values())
    assert len({(st.st_dev, st.st_ino) for st in files.values()}) == 15
    assert b.staged_files(accs[0]) == []
    cache = os.path.join(b.dir, "var", "cache")
    assert not os.path.exists(cache) or not any(os.scandir(cache))
    assert "cache none (the fs store is local)" in b.server.log()


def test_pool_is_warmed_for_deliveries_at_start(lmtp_backend):
    # Issue 13: the first delivery after a start paid for connecting,
    # preparing and PostgreSQL's cold catalog caches. Before listening, the
    # backend opens min_conns connections and runs the delivery statements
    # on each, writing nothing.
    b = lmtp_backend
    b.start(top="")
    # The janitor and the uploader start at once and may run their own
    # statements on the warmed connections, so pg_stat_activity's "last
    # query" cannot tell; the backend says how many it readied.
    b.server.wait_log("connection(s) ready for deliveries")
    m = re.search(r"database: (\d+) connection\(s\) ready for deliveries", b.server.log())
    assert m and int(m.group(1)) >= 2, b.server.log()[-2000:]
    assert b.sql("SELECT count(*) FROM message_deliveries") == "0"
    assert b.sql("SELECT count(*) FROM messages") == "0"
    assert b.sql("SELECT count(*) FROM mailboxes") == "0"


def test_concurrent_deliveries_into_one_mailbox(lmtp_backend):
    # Issue 13: many clients delivering into one mailbox at once. Whatever
    # the UID allocation does to scale, UIDs must come out unique, without
    # gaps, and in the same order as the modseqs allocated with them, and
    # the trigger-kept counters must match the rows exactly.
    b = lmtp_backend
    acc = b.account("hot@example.com")
    b.start()
    clients, each = 16, 8
    assert _concurrent_clients(b, clients, each, lambda n, i: ["hot@example.com"]) == []
    _assert_inbox_exact(b, acc, clients * each)


def _concurrent_clients(b, clients, each, rcpts_of):
    """clients sessions at once, each delivering `each` distinct messages,
    message i of session n to rcpts_of(n, i); returns what went wrong
    (replies other than 250 Saved, exceptions such as timeouts)."""
    import threading
    errors = []

    def client(n):
        try:
            c = b.connect(timeout=30)
            c.cmd("LHLO client.test")
            for i in range(each):
                rcpts = rcpts_of(n, i)
                msg = MSG.replace(b"m1@remote.test", f"cc-{n}-{i}@remote.test".encode())
                _, dr = send_message(c, "a@remote.test", rcpts, msg)
                if dr != [f"250 2.0.0 <{r}> Saved" for r in rcpts]:
                    errors.append(dr)
            c.cmd("QUIT")
        except Exception as e:  # reported by the caller
            errors.append(repr(e))
    ts = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    return errors


def _assert_inbox_exact(b, acc, n):
    """The account's INBOX holds n messages with UIDs 1..n, modseqs rising
    with the UIDs, and counters that match the rows."""
    rows = b.rows(f"SELECT m.uid, m.created_modseq, m.size FROM messages m JOIN mailboxes mb "
                  f"ON mb.id = m.mailbox_id WHERE mb.account_id = {acc} AND mb.name = 'INBOX' "
                  f"ORDER BY m.uid")
    uids = [int(r[0]) for r in rows]
    modseqs = [int(r[1]) for r in rows]
    assert uids == list(range(1, n + 1))
    assert all(a < b_ for a, b_ in zip(modseqs, modseqs[1:])), modseqs
    total = sum(int(r[2]) for r in rows)
    assert b.sql(f"SELECT s.message_count, s.unseen_count, s.total_size, mb.uid_next, "
                 f"mb.highest_modseq = {modseqs[-1]} FROM mailbox_stats s JOIN mailboxes mb "
                 f"ON mb.id = s.mailbox_id WHERE mb.account_id = {acc} AND mb.name = 'INBOX'"
                 ) == f"{n}|{n}|{total}|{n + 1}|t"


def test_concurrent_multi_recipient_deliveries_into_shared_mailboxes(lmtp_backend):
    # Group commit with many more sessions than worker threads, each
    # message to three of four mailboxes: batches keep meeting mailboxes
    # another batch is committing, so copies wait, are left for a later
    # batch, and are handed on between leaders. A copy whose thread is
    # never woken hangs its session, and the client times out.
    b = lmtp_backend
    accs = [b.account(f"s{i}@example.com") for i in range(4)]
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    for i in range(4):   # the first delivery creates the mailboxes (alone)
        assert send_message(c, "a@remote.test", [f"s{i}@example.com"], MSG)[1] == [
            f"250 2.0.0 <s{i}@example.com> Saved"]
    clients, each = 40, 5
    assert _concurrent_clients(
        b, clients, each, lambda n, i: [f"s{(n + i + k) % 4}@example.com" for k in range(3)]) == []
    # Every mailbox got 1 + 3/4 of the 200 messages, each exactly once.
    for a in accs:
        _assert_inbox_exact(b, a, 1 + clients * each * 3 // 4)


def _commit_histogram(port):
    """(count, sum) of sora_delivery_commit_copies: delivery commits and the
    copies they stored."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    vals = {}
    for line in text.splitlines():
        for k in ("count", "sum"):
            if line.startswith(f"sora_delivery_commit_copies_{k} "):
                vals[k] = int(float(line.split()[1]))
    return vals.get("count", 0), vals.get("sum", 0)


def test_recipients_of_one_transaction_share_one_commit(lmtp_backend):
    # Issue 13: the copies of a multi-recipient message are committed in
    # one transaction (group commit), not one WAL flush per recipient.
    from sorafix.common import free_port
    b = lmtp_backend
    mport = free_port()
    accs = [b.account(f"g{i}@example.com") for i in range(5)]
    b.start(lmtp_extra=f'[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    c = b.connect()
    c.cmd("LHLO client.test")
    # The first delivery to each account creates its mailboxes (alone).
    for i in range(5):
        assert send_message(c, "a@remote.test", [f"g{i}@example.com"], MSG)[1] == [
            f"250 2.0.0 <g{i}@example.com> Saved"]
    before = _commit_histogram(mport)
    rcpts = [f"g{i}@example.com" for i in range(5)] + ["g0+again@example.com"]
    _, dr = send_message(c, "a@remote.test", rcpts, MSG.replace(b"m1@", b"m2@"))
    assert dr == [f"250 2.0.0 <{r}> Saved" for r in rcpts]
    after = _commit_histogram(mport)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 6), (before, after)
    for a in accs:
        uids = [m[0] for m in b.messages(a)]
        assert uids == ([1, 2, 3] if a == accs[0] else [1, 2]), (a, uids)


@contextlib.contextmanager
def _on_insert_for(b, acc, statement):
    """While in the block, a trigger runs statement (PL/pgSQL) before a
    messages row of account acc is inserted."""
    b.sql(f"""CREATE FUNCTION sora_test_hook() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN IF NEW.account_id = {acc} THEN {statement}; END IF;
              RETURN NEW; END $$;
              CREATE TRIGGER sora_test_hook BEFORE INSERT ON messages FOR EACH ROW
              EXECUTE FUNCTION sora_test_hook()""")
    try:
        yield
    finally:
        b.sql("DROP TRIGGER sora_test_hook ON messages; DROP FUNCTION sora_test_hook()")


def test_one_failing_copy_does_not_fail_its_batch(lmtp_backend):
    # A statement that fails in a batch rolls the batch back; every copy is
    # then stored on its own, so only the failing one is refused.
    b = lmtp_backend
    accs = [b.account(f"f{i}@example.com") for i in range(3)]
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    for i in range(3):
        send_message(c, "a@remote.test", [f"f{i}@example.com"], MSG)
    with _on_insert_for(b, accs[1], "RAISE EXCEPTION 'refused by test'"):
        _, dr = send_message(c, "a@remote.test", [f"f{i}@example.com" for i in range(3)],
                             MSG.replace(b"m1@", b"m3@"))
    assert dr[0] == "250 2.0.0 <f0@example.com> Saved" and dr[2] == "250 2.0.0 <f2@example.com> Saved", dr
    assert dr[1].startswith(("4", "5")), dr
    assert [m[0] for m in b.messages(accs[0])] == [1, 2]
    assert [m[0] for m in b.messages(accs[1])] == [1]
    assert [m[0] for m in b.messages(accs[2])] == [1, 2]
    assert b.sql(f"SELECT count(*) FROM message_deliveries d JOIN mailboxes mb ON mb.id = d.mailbox_id "
                 f"WHERE mb.account_id = {accs[1]}") == "1"


def test_slow_commit_does_not_hold_up_other_mailboxes(lmtp_backend):
    # Two batches commit at once (two leaders) as long as they touch
    # different mailboxes: a delivery whose statement is slow (here a
    # trigger sleeps 2 s) holds up only deliveries into its own mailbox.
    import threading
    b = lmtp_backend
    accs = [b.account(f"s{i}@example.com") for i in range(2)]
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    for i in range(2):
        send_message(c, "a@remote.test", [f"s{i}@example.com"], MSG)
    slow = {}

    def deliver_slow():
        c2 = b.connect(timeout=30)
        c2.cmd("LHLO client.test")
        t0 = time.monotonic()
        slow["dr"] = send_message(c2, "a@remote.test", ["s0@example.com"],
                                  MSG.replace(b"m1@", b"m4@"))[1]
        slow["s"] = time.monotonic() - t0
    with _on_insert_for(b, accs[0], "PERFORM pg_sleep(2)"):
        t = threading.Thread(target=deliver_slow)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        _, dr = send_message(c, "a@remote.test", ["s1@example.com"], MSG.replace(b"m1@", b"m5@"))
        fast = time.monotonic() - t0
        t.join(30)
    assert dr == ["250 2.0.0 <s1@example.com> Saved"]
    assert slow["dr"] == ["250 2.0.0 <s0@example.com> Saved"] and slow["s"] >= 2, slow
    assert fast < 1.0, f"the delivery into another mailbox waited {fast:.2f} s"
    assert [m[0] for m in b.messages(accs[0])] == [1, 2]
    assert [m[0] for m in b.messages(accs[1])] == [1, 2]


def test_smtplib_lmtp_and_aliases_detail_case(lmtp_backend):
    b = lmtp_backend
    acc = b.account("bob@example.com", "robert@example.org")
    b.start()
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        assert s.has_extn("pipelining") and s.has_extn("enhancedstatuscodes")
        assert s.has_extn("8bitmime") and s.esmtp_features["size"] == "52428800"
        refused = s.sendmail("a@remote.test", ["Robert+Lists@EXAMPLE.org"], MSG)
        assert refused == {}
    [(uid, h, _, _)] = b.messages(acc)
    # Delivered-To keeps the address as given, +detail included.
    assert split_prefix(b.body(acc, h), "a@remote.test", "Robert+Lists@EXAMPLE.org") == MSG


def test_multi_recipient_mixed_replies_in_rcpt_order(lmtp_backend):
    b = lmtp_backend
    a1 = b.account("u1@example.com")
    a2 = b.account("u2@example.com")
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    rcpts = ["u1@example.com", "nobody@example.com", "U2+x@example.com", "u1+y@example.com",
             "<bad"]
    assert c.cmd("MAIL FROM:<>")[0] == "250 2.1.0 OK"
    rr = [c.cmd(f"RCPT TO:<{r}>" if r[0] != "<" else f"RCPT TO:{r}")[0] for r in rcpts]
    assert rr[0] == "250 2.1.5 <u1@example.com> OK"
    assert rr[1] == "550 5.1.1 <nobody@example.com> User doesn't exist"
    assert rr[2] == "250 2.1.5 <U2+x@example.com> OK"
    assert rr[3] == "250 2.1.5 <u1+y@example.com> OK"
    assert rr[4].startswith("501 ")
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(MSG))
    assert [c.reply()[0] for _ in range(3)] == [
        "250 2.0.0 <u1@example.com> Saved", "250 2.0.0 <U2+x@example.com> Saved",
        "250 2.0.0 <u1+y@example.com> Saved"]
    # The session goes on: the transaction was reset.
    assert c.code("RCPT TO:<u1@example.com>") == 503
    assert c.code("NOOP") == 250
    m1 = b.messages(a1)
    assert [m[0] for m in m1] == [1, 2]
    assert split_prefix(b.body(a1, m1[1][1]), "", "u1+y@example.com") == MSG
    [(_, h2, _, _)] = b.messages(a2)
    assert split_prefix(b.body(a2, h2), "", "U2+x@example.com") == MSG


def test_swaks_multi_recipient_with_unknown(lmtp_backend):
    b = lmtp_backend
    acc = b.account("sw@example.com")
    b.start()
    r = subprocess.run([which("swaks"), "--protocol", "LMTP", "--server", "127.0.0.1",
                        "--port", str(b.port), "--helo", "client.test", "--from", "s@remote.test",
                        "--to", "sw@example.com,ghost@example.com", "--body", "swaks body",
                        "--header", "Subject: swaks test"], capture_output=True, text=True,
                       timeout=30)
    out = r.stdout
    assert "<-  250 2.1.5 <sw@example.com> OK" in out, out
    assert "<** 550 5.1.1 <ghost@example.com> User doesn't exist" in out, out
    assert "<-  250 2.0.0 <sw@example.com> Saved" in out, out
    [(_, h, _, _)] = b.messages(acc)
    assert b"swaks body" in b.body(acc, h)
    assert b.sql("SELECT subject FROM messages") == "swaks test"


def test_unix_socket_delivery(lmtp_backend):
    b = lmtp_backend
    acc = b.account("ux@example.com")
    b.start(unix=True, tcp=False)
    with smtplib.LMTP(b.socket_path) as s:
        s.ehlo("local.test")
        assert s.sendmail("s@remote.test", ["ux@example.com"], MSG) == {}
    [(_, h, _, _)] = b.messages(acc)
    assert split_prefix(b.body(acc, h), "s@remote.test", "ux@example.com", helo="local.test",
                        addr="unix socket") == MSG


def test_retried_delivery_is_not_stored_twice(lmtp_backend):
    b = lmtp_backend
    acc = b.account("dup@example.com")
    b.start()
    for attempt in range(2):
        c = b.connect()
        c.cmd("LHLO client.test")
        _, dr = send_message(c, "s@remote.test", ["dup@example.com"], MSG)
        assert dr == ["250 2.0.0 <dup@example.com> Saved" if attempt == 0 else
                      "250 2.0.0 <dup@example.com> Saved (already delivered)"]
        c.close()
    assert len(b.messages(acc)) == 1
    # The retry's staged copy was removed again; one body was uploaded.
    b.wait_uploaded()
    assert b.objects(acc) == [b.messages(acc)[0][1]]
    assert b.staged_files(acc) == []
    assert "duplicate delivery ignored" in b.server.log()
    # A different message (or envelope) is a new delivery.
    c = b.connect()
    c.cmd("LHLO client.test")
    _, dr = send_message(c, "other@remote.test", ["dup@example.com"], MSG)
    assert dr == ["250 2.0.0 <dup@example.com> Saved"]
    assert len(b.messages(acc)) == 2


# ---------------------------------------------------------------- DATA handling


def test_dot_stuffing_bare_lf_and_long_lines(lmtp_backend):
    b = lmtp_backend
    acc = b.account("raw@example.com")
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    long_line = b"x" * 5000
    data = (b"Subject: raw\r\n\r\n"
            b"..leading dot\r\n"
            b".\n"                      # not the end: a dot after a CRLF but then bare LF
            b"bare\nlf\r\n"
            b"bare\rcr\r\n"
            + long_line + b"\r\n"
            b"8bit \xc3\xa9\xff\r\n"
            b".\r\n")
    assert c.cmd("MAIL FROM:<s@remote.test> BODY=8BITMIME")[0].startswith("250")
    assert c.cmd("RCPT TO:<raw@example.com>")[0].startswith("250")
    assert c.cmd("DATA")[0].startswith("354")
    c.send(data)
    assert c.reply() == ["250 2.0.0 <raw@example.com> Saved"]
    [(_, h, _, _)] = b.messages(acc)
    want = (b"Subject: raw\r\n\r\n.leading dot\r\n\r\nbare\r\nlf\r\nbare\rcr\r\n"
            + long_line + b"\r\n8bit \xc3\xa9\xff\r\n")
    assert split_prefix(b.body(acc, h), "s@remote.test", "raw@example.com") == want
    assert c.code("NOOP") == 250


def test_oversized_message_552_and_session_continues(lmtp_backend):
    b = lmtp_backend
    acc = b.account("big@example.com")
    b.start(lmtp_extra='max_message_size = "4kb"')
    c = b.connect()
    caps = c.cmd("LHLO client.test")
    assert "250-SIZE 4096" in caps
    # Declared too big: refused at MAIL.
    assert c.cmd("MAIL FROM:<s@remote.test> SIZE=5000")[0].startswith("552 5.3.4")
    # Not declared: refused after DATA, once per recipient, session usable.
    big = b"Subject: big\r\n\r\n" + (b"y" * 100 + b"\r\n") * 60
    rr, dr = send_message(c, "s@remote.test", ["big@example.com", "big+2@example.com"], big)
    assert dr == ["552 5.3.4 <big@example.com> Message size exceeds fixed limit",
                  "552 5.3.4 <big+2@example.com> Message size exceeds fixed limit"]
    assert b.messages(acc) == []
    assert c.code("RSET") == 250
    # Exactly at the limit is fine (size counts the stored, unstuffed bytes).
    exact = b"Subject: e\r\n\r\n" + b"z" * 4080 + b"\r\n"
    assert len(exact) == 4096
    _, dr = send_message(c, "s@remote.test", ["big@example.com"], exact)
    assert dr == ["250 2.0.0 <big@example.com> Saved"]
    assert len(b.messages(acc)) == 1
    assert "over the 4096-byte limit" in b.server.log()


def test_large_message_is_spooled_and_stored_intact(lmtp_backend):
    b = lmtp_backend
    acc = b.account("large@example.com")
    b.start()
    body = b"Subject: large\r\nContent-Type: text/plain\r\n\r\n" + b"".join(
        b"line %07d " % i + b"abcdefghij" * 8 + b"\r\n" for i in range(40000))
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        assert s.sendmail("s@remote.test", ["large@example.com"], body) == {}
    [(_, h, size, _)] = b.messages(acc)
    assert split_prefix(b.body(acc, h), "s@remote.test", "large@example.com") == body
    assert size > 3_000_000


def test_pipelined_commands(lmtp_backend):
    b = lmtp_backend
    acc = b.account("pipe@example.com")
    b.start()
    c = b.connect()
    # Everything up to DATA in one packet, then the message and the next
    # transaction and QUIT in another.
    c.send(b"LHLO client.test\r\nMAIL FROM:<p@remote.test>\r\nRCPT TO:<pipe@example.com>\r\n"
           b"RCPT TO:<nope@example.com>\r\nRCPT TO:<pipe+2@example.com>\r\nDATA\r\n")
    assert c.reply()[-1].startswith("250 ")
    assert c.reply() == ["250 2.1.0 OK"]
    assert c.reply() == ["250 2.1.5 <pipe@example.com> OK"]
    assert c.reply()[0].startswith("550 5.1.1")
    assert c.reply() == ["250 2.1.5 <pipe+2@example.com> OK"]
    assert c.reply()[0].startswith("354")
    c.send(dot_stuff(MSG) + b"MAIL FROM:<q@remote.test>\r\nRCPT TO:<pipe@example.com>\r\n"
           b"NOOP\r\nRSET\r\nQUIT\r\n")
    assert c.reply() == ["250 2.0.0 <pipe@example.com> Saved"]
    assert c.reply() == ["250 2.0.0 <pipe+2@example.com> Saved"]
    assert c.reply() == ["250 2.1.0 OK"]
    assert c.reply() == ["250 2.1.5 <pipe@example.com> OK"]
    assert c.reply() == ["250 2.0.0 OK"]
    assert c.reply() == ["250 2.0.0 OK"]
    assert c.reply() == ["221 2.0.0 mx.test Bye"]
    assert len(b.messages(acc)) == 2


def test_byte_at_a_time_equals_one_piece(lmtp_backend):
    """A whole session sent one byte per TCP segment gives the same replies
    and the same stored message as the session sent in one piece."""
    import socket
    import time

    b = lmtp_backend
    acc = b.account("bytes@example.com")
    b.start()
    results = []
    for one_piece in (True, False):
        # Another sender each time, or the second would be a retry.
        sender = b"one@remote.test" if one_piece else b"bytes@remote.test"
        transcript = (b"LHLO client.test\r\nMAIL FROM:<" + sender + b">\r\n"
                      b"RCPT TO:<bytes@example.com>\r\nRCPT TO:<none@example.com>\r\n"
                      b"DATA\r\n" + dot_stuff(MSG) + b"NOOP\r\nQUIT\r\n")
        c = b.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if one_piece:
            c.send(transcript)
        else:
            for i in range(len(transcript)):
                c.send(transcript[i:i + 1])
                time.sleep(0.0005)
        replies = [c.reply() for _ in range(8)]
        assert c.drain() == b""
        results.append(replies)
    assert results[0] == results[1]
    assert [r[0][:3] for r in results[0]] == ["250", "250", "250", "550", "354", "250", "250",
                                              "221"]
    msgs = b.messages(acc)
    assert len(msgs) == 2
    bodies = [split_prefix(b.body(acc, h), sender, "bytes@example.com")
              for (_, h, _, _), sender in zip(msgs, ("one@remote.test", "bytes@remote.test"))]
    assert bodies == [MSG, MSG]


# ---------------------------------------------------------------- protocol errors


def test_command_errors_and_limits(lmtp_backend):
    b = lmtp_backend
    b.account("e@example.com")
    b.start(lmtp_extra="max_errors = 8")
    c = b.connect()
    assert c.cmd("MAIL FROM:<a@b.c>")[0] == "503 5.5.1 Error: send LHLO first"
    assert c.cmd("EHLO client.test")[0].startswith("500 5.5.1")
    assert c.cmd("LHLO client.test")[-1].startswith("250 ")
    assert c.cmd("VRFY e@example.com")[0].startswith("252 2.5.2")
    assert c.cmd("RCPT TO:<e@example.com>")[0] == "503 5.5.1 Error: need MAIL command"
    assert c.cmd("DATA")[0] == "503 5.5.1 Error: need MAIL command"
    assert c.code("MAIL FROM:<a@b.c>") == 250
    assert c.cmd("MAIL FROM:<a@b.c>")[0] == "503 5.5.1 Error: nested MAIL command"
    assert c.cmd("DATA")[0] == "503 5.5.1 Error: no valid recipients"
    # An over-long line is answered once and skipped; the session goes on.
    c.send(b"NOOP " + b"z" * 3000 + b"\r\n")
    assert c.reply() == ["500 5.5.2 Line too long"]
    assert c.code("RSET") == 250
    # That was the seventh error; the eighth ends the session.
    assert c.cmd("FROB") == ["500 5.5.1 Unknown command"]
    assert c.reply() == ["421 4.7.0 mx.test Error: too many errors"]
    assert c.drain() == b""
    assert "too many invalid commands (8): closing" in b.server.log()


def test_too_many_recipients(lmtp_backend):
    b = lmtp_backend
    b.account("many@example.com")
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    c.cmd("MAIL FROM:<a@remote.test>")
    batch = "".join(f"RCPT TO:<many+{i}@example.com>\r\n" for i in range(101))
    c.send(batch)
    replies = [c.reply()[0] for _ in range(101)]
    assert all(r.startswith("250 2.1.5") for r in replies[:100])
    assert replies[100] == "452 4.5.3 Error: too many recipients"


# ---------------------------------------------------------------- STARTTLS, XCLIENT


def test_starttls(lmtp_backend, certs):
    b = lmtp_backend
    acc = b.account("tls@example.com")
    b.start(lmtp_extra=f'tls_use_starttls = true\ntls_cert_file = "{certs.server_chain}"\n'
                       f'tls_key_file = "{certs.server_key}"')
    ctx = ssl.create_default_context(cafile=certs.ca_crt)
    ctx.check_hostname = False
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=ctx)
        assert code == 220
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        assert s.sendmail("s@remote.test", ["tls@example.com"], MSG) == {}
    [(_, h, _, _)] = b.messages(acc)
    assert split_prefix(b.body(acc, h), "s@remote.test", "tls@example.com", proto="LMTPS") == MSG
    # Commands pipelined behind STARTTLS are never executed in TLS.
    c = b.connect()
    c.cmd("LHLO client.test")
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@x.y>\r\n")
    assert c.reply()[0].startswith("220 2.0.0")
    assert c.buf == b""
    tc = LmtpConn(ctx.wrap_socket(c.sock, server_hostname="mail.test"), read_greeting=False)
    # MAIL was dropped: RCPT has no transaction, and LHLO is needed again.
    assert tc.cmd("RCPT TO:<tls@example.com>")[0] == "503 5.5.1 Error: need MAIL command"
    assert tc.cmd("MAIL FROM:<a@b.c>")[0] == "503 5.5.1 Error: send LHLO first"


def test_xclient_from_trusted_peer(lmtp_backend):
    b = lmtp_backend
    acc = b.account("xc@example.com")
    b.start()
    c = b.connect()
    c.cmd("LHLO proxy.test")
    # XCLIENT answers with a fresh greeting; LHLO comes again.
    assert c.cmd("XCLIENT ADDR=192.0.2.7 PORT=4711 HELO=client.example LOGIN=someone") == [
        "220 mx.test LMTP Sora ready"]
    assert c.code("MAIL FROM:<a@b.c>") == 503
    c.cmd("LHLO proxy.test")
    _, dr = send_message(c, "s@remote.test", ["xc@example.com"], MSG)
    assert dr == ["250 2.0.0 <xc@example.com> Saved"]
    [(_, h, _, _)] = b.messages(acc)
    assert split_prefix(b.body(acc, h), "s@remote.test", "xc@example.com", helo="client.example",
                        addr=r"\[192\.0\.2\.7\]") == MSG
    log = b.server.log()
    assert re.search(r"peer=192\.0\.2\.7:4711 user=someone delivered: .*rcpt=<xc@example.com>",
                     log), log
    # IPv6 and not within a transaction.
    c.cmd("MAIL FROM:<a@b.c>")
    assert c.cmd("XCLIENT ADDR=IPV6:2001:db8::1")[0] == "503 5.5.1 Error: MAIL transaction in progress"
    c.cmd("RSET")
    assert c.cmd("XCLIENT ADDR=IPV6:2001:db8::1")[0].startswith("220 ")
    c.cmd("LHLO proxy.test")
    send_message(c, "s@remote.test", ["xc@example.com"], MSG + b"2")
    h2 = b.messages(acc)[1][1]
    assert b"from proxy.test ([IPv6:2001:db8::1])" not in b.body(acc, h2)
    assert b"from client.example ([IPv6:2001:db8::1])" in b.body(acc, h2)


def test_xclient_from_untrusted_peer_refused(lmtp_backend):
    b = lmtp_backend
    acc = b.account("xu@example.com")
    b.start(lmtp_extra='trusted_networks = ["192.0.2.0/24"]')
    c = b.connect()
    caps = c.cmd("LHLO client.test")
    assert not any("XCLIENT" in l for l in caps)
    assert c.cmd("XCLIENT ADDR=192.0.2.7")[0] == "550 5.7.0 Error: insufficient authorization"
    _, dr = send_message(c, "s@remote.test", ["xu@example.com"], MSG)
    assert dr == ["250 2.0.0 <xu@example.com> Saved"]
    [(_, h, _, _)] = b.messages(acc)
    assert split_prefix(b.body(acc, h), "s@remote.test", "xu@example.com") == MSG
    assert "XCLIENT refused" in b.server.log()


# ---------------------------------------------------------------- SMTPUTF8 (RFC 6531)

U8_SENDER = "jörg@exämple.test"
U8_RCPT = "用户@例子.测试"
# RFC 6532: an SMTPUTF8 message may carry raw UTF-8 in its header fields.
MSG_U8 = ("From: Jörg Müller <jörg@exämple.test>\r\n"
          "To: 用户 <用户@例子.测试>\r\n"
          "Subject: Grüße aus Köln, 你好\r\n"
          "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
          "Message-ID: <ü1@exämple.test>\r\n"
          "MIME-Version: 1.0\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "Content-Transfer-Encoding: 8bit\r\n"
          "\r\n"
          "Grüße,\r\n"
          ".ein Punkt am Zeilenanfang\r\n"
          "你好\r\n").encode()


def test_smtputf8_smtplib_delivery_byte_exact(lmtp_backend):
    b = lmtp_backend
    # sora-admin takes well-formed UTF-8 addresses, aliases included.
    cn = b.account(U8_RCPT)
    de = b.account(U8_SENDER, "Jörg.Müller@exämple.test")
    b.start()
    with smtplib.LMTP("127.0.0.1", b.port) as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        # A UTF-8 recipient with +detail, then an alias in other letter case
        # (credentials are matched with lower(), which folds Ö and Ü too).
        # One recipient per transaction: smtplib reads a single reply after
        # DATA, not LMTP's one per recipient.
        for rcpt in ("用户+news@例子.测试", "JÖRG.MÜLLER@EXÄMPLE.TEST"):
            assert s.sendmail(U8_SENDER, [rcpt], MSG_U8, mail_options=["SMTPUTF8"]) == {}
    for acc, rcpt in ((cn, "用户+news@例子.测试"), (de, "JÖRG.MÜLLER@EXÄMPLE.TEST")):
        [(_, h, size, mbox)] = b.messages(acc)
        assert mbox == "INBOX"
        stored = b.body(acc, h)
        assert len(stored) == size
        # Byte-exact after our trace lines, which keep the UTF-8 addresses
        # and name the protocol UTF8LMTP.
        assert split_prefix(stored, U8_SENDER, rcpt, proto="UTF8LMTP") == MSG_U8
        assert stored.startswith(f"Return-Path: <{U8_SENDER}>\r\n"
                                 f"Delivered-To: {rcpt}\r\n".encode())
        assert f"\r\n\tfor <{rcpt}>; ".encode() in stored
    # The metadata columns read the raw UTF-8 header values as they are.
    row = b.rows("SELECT subject, split_part(from_text, E'\\n', 1), "
                 "split_part(to_text, E'\\n', 1), message_id, encode(raw_headers, 'hex') "
                 f"FROM messages WHERE account_id = {cn}")[0]
    assert row[:4] == ["Grüße aus Köln, 你好", "Jörg Müller <jörg@exämple.test>",
                       "用户 <用户@例子.测试>", "<ü1@exämple.test>"]
    stored = b.body(cn, b.messages(cn)[0][1])
    assert bytes.fromhex(row[4]) == stored[:stored.index(b"\r\n\r\n") + 4]
    assert len(re.findall(r"delivered: from=<", b.server.log())) == 2


def test_smtputf8_required_for_utf8_addresses(lmtp_backend):
    b = lmtp_backend
    cn = b.account(U8_RCPT)
    ascii_acc = b.account("plain@example.com")
    b.start()
    c = b.connect()
    caps = c.cmd("LHLO client.test")
    assert [l[4:] for l in caps[1:]] == ["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING",
                                         "SIZE 52428800", "SMTPUTF8",
                                         "XCLIENT ADDR PORT HELO LOGIN"]
    # A UTF-8 sender without SMTPUTF8: no transaction starts.
    assert c.cmd(f"MAIL FROM:<{U8_SENDER}>") == [
        "553 5.6.7 Non-ASCII sender address requires SMTPUTF8 in MAIL FROM"]
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>")[0] == "503 5.5.1 Error: need MAIL command"
    # A UTF-8 recipient in a transaction without SMTPUTF8 is refused; ASCII
    # recipients in the same transaction still go through.
    assert c.code("MAIL FROM:<a@remote.test>") == 250
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>") == [
        "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8 in MAIL FROM"]
    assert c.cmd("RCPT TO:<plain@example.com>") == ["250 2.1.5 <plain@example.com> OK"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(MSG))
    assert c.reply() == ["250 2.0.0 <plain@example.com> Saved"]

    # SMTPUTF8 is per transaction: RSET forgets it.
    assert c.code("MAIL FROM:<a@remote.test> SMTPUTF8") == 250
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>") == [f"250 2.1.5 <{U8_RCPT}> OK"]
    assert c.code("RSET") == 250
    assert c.code("MAIL FROM:<a@remote.test>") == 250
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>")[0].startswith("553 5.6.7 ")
    assert c.code("RSET") == 250
    # ... and so does the end of DATA.
    assert c.code(f"MAIL FROM:<{U8_SENDER}> SMTPUTF8") == 250
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>") == [f"250 2.1.5 <{U8_RCPT}> OK"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(MSG_U8))
    assert c.reply() == [f"250 2.0.0 <{U8_RCPT}> Saved"]
    assert c.code(f"MAIL FROM:<{U8_SENDER}>") == 553
    assert c.code("MAIL FROM:<a@remote.test>") == 250
    assert c.cmd(f"RCPT TO:<{U8_RCPT}>")[0].startswith("553 5.6.7 ")
    assert c.code("RSET") == 250
    # BODY=BINARYMIME stays refused, with or without SMTPUTF8.
    assert c.cmd("MAIL FROM:<a@remote.test> BODY=BINARYMIME SMTPUTF8") == [
        "555 5.5.4 BODY=BINARYMIME is not supported"]
    # The 553s are policy answers, not syntax errors: the session is fine.
    assert c.code("NOOP") == 250
    assert c.cmd("QUIT") == ["221 2.0.0 mx.test Bye"]

    [(_, h, _, _)] = b.messages(ascii_acc)
    assert split_prefix(b.body(ascii_acc, h), "a@remote.test", "plain@example.com",
                        proto="LMTP") == MSG
    [(_, h, _, _)] = b.messages(cn)
    assert split_prefix(b.body(cn, h), U8_SENDER, U8_RCPT, proto="UTF8LMTP") == MSG_U8


def test_smtputf8_invalid_utf8_address_is_syntax_error(lmtp_backend):
    b = lmtp_backend
    cn = b.account(U8_RCPT)
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    rcpt = U8_RCPT.encode()
    bad = [b"j\xffrg@example.test",           # never valid in UTF-8
           b"j\xc3@example.test",             # truncated sequence
           b"j\xc0\xafrg@example.test",       # overlong '/'
           b"j\xed\xa0\x80rg@example.test",   # UTF-16 surrogate
           b"user@ex\xe4mple.test",           # Latin-1, not UTF-8
           b"j\xf4\x90\x80\x80@example.test"]  # above U+10FFFF
    # A sender with invalid UTF-8 is a 501, also with SMTPUTF8.
    for addr in bad[:2]:
        c.send(b"MAIL FROM:<" + addr + b"> SMTPUTF8\r\n")
        assert c.reply()[0].startswith("501 5.1.7 "), addr
    assert c.code("MAIL FROM:<a@remote.test> SMTPUTF8") == 250
    for addr in bad:
        c.send(b"RCPT TO:<" + addr + b">\r\n")
        assert c.reply()[0].startswith("501 5.1.3 "), addr
    # The session goes on: the transaction is intact and delivers.
    assert c.code("NOOP") == 250
    c.send(b"RCPT TO:<" + rcpt + b">\r\n")
    assert c.reply() == [f"250 2.1.5 <{U8_RCPT}> OK"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(MSG_U8))
    assert c.reply() == [f"250 2.0.0 <{U8_RCPT}> Saved"]
    [(_, h, _, _)] = b.messages(cn)
    assert split_prefix(b.body(cn, h), "a@remote.test", U8_RCPT, proto="UTF8LMTP") == MSG_U8
