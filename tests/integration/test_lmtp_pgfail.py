"""LMTP when the database fails: PostgreSQL stopped mid-run gives 451 4.3.0
(the MTA retries), never a crash and never a 250 for mail that was not
stored; once it is back, deliveries succeed; nothing is ever half-stored.

test_postgres_stopped_mid_session stops the session-wide PostgreSQL cluster
and always starts it again before returning, so later tests are unaffected."""
import time

import pytest

from sorafix.common import wait_for
from sorafix.lmtp import dot_stuff

MSG = (b"From: a@remote.test\r\nTo: b@example.com\r\nSubject: pg test\r\n"
       b"Message-ID: <pg-1@remote.test>\r\n\r\nbody text\r\n")


def counts(b, acc):
    return b.rows(
        f"SELECT (SELECT count(*) FROM messages WHERE account_id = {acc}),"
        " (SELECT count(*) FROM message_deliveries d JOIN mailboxes m ON m.id = d.mailbox_id"
        f"   WHERE m.account_id = {acc}),"
        " (SELECT count(*) FROM message_contents c WHERE c.content_hash IN"
        f"   (SELECT coalesce(text_key, content_hash) FROM messages WHERE account_id = {acc})),"
        f" (SELECT uid_next FROM mailboxes WHERE account_id = {acc} AND name = 'INBOX')")[0]


def test_postgres_stopped_mid_session(lmtp_backend, pg):
    b = lmtp_backend
    acc = b.account("pg@example.com")
    b.start()
    c = b.connect()
    c.cmd("LHLO client.test")
    assert c.code("MAIL FROM:<a@remote.test>") == 250
    assert c.code("RCPT TO:<pg@example.com>") == 250
    try:
        pg.stop()
        # The recipient was accepted before; the delivery now fails.
        assert c.cmd("DATA")[0].startswith("354")
        c.send(dot_stuff(MSG))
        assert c.reply() == ["451 4.3.0 <pg@example.com> Temporary failure, try again later"]
        # Recipient lookups fail the same way; the session stays usable.
        assert c.code("MAIL FROM:<a@remote.test>") == 250
        assert c.cmd("RCPT TO:<pg@example.com>") == [
            "451 4.3.0 <pg@example.com> Temporary failure in recipient lookup, try again later"]
        assert c.code("RSET") == 250
        assert b.server.proc.poll() is None
    finally:
        pg.start()

    # Back: the pool replaces its dead connections and the retry succeeds.
    def retry():
        assert c.code("MAIL FROM:<a@remote.test>") == 250
        r = c.cmd("RCPT TO:<pg@example.com>")[0]
        if not r.startswith("250"):
            c.cmd("RSET")
            return False
        assert c.cmd("DATA")[0].startswith("354")
        c.send(dot_stuff(MSG))
        return c.reply()[0] == "250 2.0.0 <pg@example.com> Saved"

    wait_for(retry, timeout=30, interval=0.5, what="delivery after PostgreSQL restart")
    # One message, one delivery key, one text row, UID 1 used; one body
    # uploaded, nothing left in staging.
    assert counts(b, acc) == ["1", "1", "1", "2"]
    b.wait_uploaded()
    assert b.objects(acc) == [b.messages(acc)[0][1]]
    assert b.staged_files(acc) == []
    log = b.server.log()
    assert "delivery failed: from=<a@remote.test> rcpt=<pg@example.com>" in log
    assert "lookup failed" in log


def test_pipelined_data_after_tempfail_is_not_an_error(lmtp_backend, pg):
    """During an outage a pipelining client (Postfix) sends MAIL, RCPT and
    DATA in one go: RCPT gets 451, DATA then 503. The 503 follows from our
    own temporary failure, so it must not count towards max_errors: after
    more transactions than max_errors the session is still open."""
    b = lmtp_backend
    b.account("pipe@example.com")
    b.start(lmtp_extra="max_errors = 3")
    c = b.connect()
    c.cmd("LHLO client.test")
    try:
        pg.stop()
        batch = b"".join(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<pipe@example.com>\r\n"
                         b"DATA\r\nRSET\r\n" for _ in range(6))
        c.send(batch)
        for _ in range(6):
            assert c.reply()[0].startswith("250 2.1.0")
            assert c.reply()[0].startswith("451 4.3.0")
            assert c.reply()[0].startswith("503 5.5.1")
            assert c.reply()[0].startswith("250")
        assert c.code("NOOP") == 250
        # A DATA without any RCPT attempt is still the client's mistake.
        assert c.code("MAIL FROM:<a@remote.test>") == 250
        for _ in range(2):
            assert c.code("DATA") == 503
        assert c.code("DATA") == 503
        assert c.reply()[0].startswith("421")
    finally:
        pg.start()


def test_failure_inside_the_transaction_leaves_nothing(lmtp_backend):
    b = lmtp_backend
    acc = b.account("half@example.com")
    ok = b.account("ok@example.com")
    b.start()
    # Deliver once so the mailboxes exist, then make the last insert of the
    # delivery statement fail for this account only: the message row, the
    # UID allocation and the delivery key were already written by then.
    c = b.connect()
    c.cmd("LHLO client.test")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<half@example.com>")
    c.cmd("DATA")
    c.send(dot_stuff(MSG))
    assert c.reply()[0].startswith("250 ")
    before = counts(b, acc)
    first = b.messages(acc)[0][1]
    b.sql(f"""CREATE FUNCTION fail_upload() RETURNS trigger LANGUAGE plpgsql AS $$
              BEGIN IF NEW.account_id = {acc} THEN RAISE EXCEPTION 'injected failure'; END IF;
              RETURN NEW; END $$;
              CREATE TRIGGER fail_upload BEFORE INSERT ON messages
              FOR EACH ROW EXECUTE FUNCTION fail_upload();""")
    msg2 = MSG.replace(b"pg-1", b"pg-2")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<half@example.com>")
    c.cmd("RCPT TO:<ok@example.com>")
    c.cmd("DATA")
    c.send(dot_stuff(msg2))
    # Per recipient: the failing copy gets 451, the other one is stored.
    assert c.reply() == ["451 4.3.0 <half@example.com> Temporary failure, try again later"]
    assert c.reply() == ["250 2.0.0 <ok@example.com> Saved"]
    assert counts(b, acc) == before
    assert len(b.messages(ok)) == 1
    # The failed copy's body was removed again (from the fs store, which
    # the delivery wrote directly).
    b.wait_uploaded()
    assert b.objects(acc) == [first]
    assert b.staged_files(acc) == []
    assert "injected failure" in b.server.log()

    # The MTA's retry goes through once the fault is gone, with the next UID.
    b.sql("DROP TRIGGER fail_upload ON messages")
    c.cmd("MAIL FROM:<a@remote.test>")
    c.cmd("RCPT TO:<half@example.com>")
    c.cmd("DATA")
    c.send(dot_stuff(msg2))
    assert c.reply() == ["250 2.0.0 <half@example.com> Saved"]
    assert [m[0] for m in b.messages(acc)] == [1, 2]
