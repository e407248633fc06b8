"""LMTP's recipient cache (docs/lmtp.md, "Recipients"): a recipient found
once answers the next RCPT TO without a lookup, and any change to accounts
or credentials empties the cache of the backend at once, through the
'sora_accounts' notification of migration 0011's triggers."""
import time

from sorafix.common import free_port, wait_for
from sorafix.lmtp import dot_stuff

from test_net import metric_value, metrics_text


def start(b, ttl=None):
    mport = free_port()
    extra = f'recipient_cache_ttl = "{ttl}"\n' if ttl is not None else ""
    b.start(lmtp_extra=f'{extra}\n[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    wait_for(lambda: "LISTEN connection to database" in b.server.log(), what="LISTEN up")
    return mport


def value(mport, name, **labels):
    return metric_value(metrics_text(mport), name, **labels) or 0


def hits(mport):
    return value(mport, "sora_lmtp_recipient_cache_hits_total")


def rcpt(b, address, deliver=False, _n=[0]):
    """The RCPT TO reply code for address; with deliver, the message is sent
    too (the recipient must be accepted)."""
    c = b.connect()
    try:
        c.cmd("LHLO client.test")
        assert c.code("MAIL FROM:<a@remote.test>") == 250
        code = c.code(f"RCPT TO:<{address}>")
        if deliver:
            assert code == 250
            _n[0] += 1
            assert c.cmd("DATA")[0].startswith("354")
            c.send(dot_stuff(f"Subject: cache {_n[0]}\r\nMessage-ID: <cache-{_n[0]}@remote.test>"
                             f"\r\n\r\nto {address}\r\n".encode()))
            assert c.reply()[0].startswith("250")
        c.cmd("QUIT")
        return code
    finally:
        c.close()


def change(b, mport, *admin_args):
    """Runs a sora-admin change and waits until the backend heard of it."""
    n = value(mport, "sora_db_notifications_total", channel="sora_accounts")
    b.admin.ok(*admin_args)
    wait_for(lambda: value(mport, "sora_db_notifications_total", channel="sora_accounts") > n,
             what="the sora_accounts notification")


def test_cache_answers_repeats_and_forgets_every_change(lmtp_backend):
    b = lmtp_backend
    alice = b.account("alice@example.com")
    bob = b.account("bob@example.com", "shared@example.com")
    carol = b.account("carol@example.com")
    mport = start(b)

    # The first RCPT looks up; the next ones are answered from the cache.
    assert rcpt(b, "alice@example.com") == 250
    h = hits(mport)
    assert rcpt(b, "alice@example.com", deliver=True) == 250
    assert rcpt(b, "ALICE@example.com") == 250      # another key: looked up
    assert hits(mport) == h + 1
    assert len(b.messages(alice)) == 1

    # A deleted account is refused at once, not when its entry expires.
    change(b, mport, "accounts", "delete", "--email", "alice@example.com")
    assert rcpt(b, "alice@example.com") == 550
    change(b, mport, "accounts", "restore", "--email", "alice@example.com")
    assert rcpt(b, "alice@example.com") == 250

    # An alias moved to another account: mail follows it at once.
    rcpt(b, "shared@example.com", deliver=True)
    rcpt(b, "shared@example.com", deliver=True)
    assert len(b.messages(bob)) == 2
    change(b, mport, "credentials", "delete", "--email", "shared@example.com")
    assert rcpt(b, "shared@example.com") == 550
    change(b, mport, "credentials", "add", "--account", "carol@example.com", "--email",
           "shared@example.com", "--password", "pw-shared", "--hash", "ssha512")
    rcpt(b, "shared@example.com", deliver=True)
    assert len(b.messages(carol)) == 1 and len(b.messages(bob)) == 2

    # Unknown recipients are not kept: an account made a moment after a
    # refusal receives mail.
    assert rcpt(b, "dave@example.com") == 550
    b.account("dave@example.com")
    assert rcpt(b, "dave@example.com") == 250

    # A change by plain SQL notifies too.
    rcpt(b, "bob@example.com")
    rcpt(b, "bob@example.com")
    n = value(mport, "sora_db_notifications_total", channel="sora_accounts")
    b.sql("UPDATE accounts SET deleted_at = now() "
          "WHERE id = (SELECT account_id FROM credentials WHERE address = 'bob@example.com')")
    wait_for(lambda: value(mport, "sora_db_notifications_total", channel="sora_accounts") > n,
             what="the sora_accounts notification")
    assert rcpt(b, "bob@example.com") == 550


def test_entries_expire_and_ttl_zero_turns_the_cache_off(lmtp_backend):
    b = lmtp_backend
    b.account("erin@example.com")
    mport = start(b, ttl="1s")
    rcpt(b, "erin@example.com")
    h = hits(mport)
    rcpt(b, "erin@example.com")
    assert hits(mport) == h + 1
    time.sleep(1.2)
    rcpt(b, "erin@example.com")                     # expired: looked up again
    assert hits(mport) == h + 1
    rcpt(b, "erin@example.com")
    assert hits(mport) == h + 2

    b.server.stop()
    mport = start(b, ttl="0")
    for _ in range(3):
        assert rcpt(b, "erin@example.com") == 250
    assert hits(mport) == 0


def test_not_used_while_the_listener_is_down_and_emptied_after(lmtp_backend, pg):
    # Changes made while the LISTEN connection is down announce themselves
    # to nobody: the cache must not answer then, and must be empty after.
    b = lmtp_backend
    b.account("frank@example.com")
    mport = start(b)
    rcpt(b, "frank@example.com")
    h = hits(mport)
    assert rcpt(b, "frank@example.com") == 250
    assert hits(mport) == h + 1
    try:
        pg.stop()
        # Five failed reconnects: the next one is seconds away, so the
        # change below is made while nobody listens.
        wait_for(lambda: b.server.log().count("retrying in") >= 5, timeout=20,
                 what="the listener backing off")
        # Not from the cache: the lookup runs, and fails with the database.
        assert rcpt(b, "frank@example.com") == 451
        assert hits(mport) == h + 1
    finally:
        pg.start()
    wait_for(lambda: b.sql("SELECT 1") == "1", timeout=30, what="the database back")
    b.sql("UPDATE accounts SET deleted_at = now() "
          "WHERE id = (SELECT account_id FROM credentials WHERE address = 'frank@example.com')")
    wait_for(lambda: value(mport, "sora_db_listen_resyncs_total") == 1, timeout=40,
             what="LISTEN back after the restart")
    assert rcpt(b, "frank@example.com") == 550
