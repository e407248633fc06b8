"""The backend's LISTEN connection (issue 8, point 4): mailbox change
notifications from the counter triggers arrive over one non-blocking
connection; when it is cut (pg_terminate_backend, a server restart) the
backend reconnects with backoff, LISTENs again and signals that
notifications may have been missed (sora_db_listen_resyncs_total)."""
from sorafix.common import free_port, wait_for
from sorafix.lmtp import dot_stuff

from test_net import metric_value, metrics_text

def deliver(b, rcpt, _n=[0]):
    # A new message each time: a repeated one is a duplicate delivery and
    # changes no mailbox.
    _n[0] += 1
    msg = (f"From: a@remote.test\r\nSubject: listen {_n[0]}\r\n"
           f"Message-ID: <listen-{_n[0]}@remote.test>\r\n\r\nbody\r\n").encode()
    c = b.connect()
    c.cmd("LHLO client.test")
    assert c.code("MAIL FROM:<a@remote.test>") == 250
    assert c.code(f"RCPT TO:<{rcpt}>") == 250
    assert c.cmd("DATA")[0].startswith("354")
    c.send(dot_stuff(msg))
    assert c.reply()[0].startswith("250")
    c.cmd("QUIT")
    c.close()


def value(mport, name, **labels):
    return metric_value(metrics_text(mport), name, **labels) or 0


def test_notifications_arrive_and_survive_a_cut_connection(lmtp_backend, pg):
    b = lmtp_backend
    b.account("listen@example.com")
    mport = free_port()
    b.start(lmtp_extra=f'\n[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    wait_for(lambda: "LISTEN connection to database" in b.server.log(), what="LISTEN up")
    assert "established" in b.server.log()

    n0 = value(mport, "sora_db_notifications_total", channel="sora_mailbox")
    deliver(b, "listen@example.com")
    wait_for(lambda: value(mport, "sora_db_notifications_total", channel="sora_mailbox") > n0,
             what="notification for the delivery")

    # An administrator (or a failover) cuts the connection.
    assert value(mport, "sora_db_listen_resyncs_total") == 0
    killed = b.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                   " WHERE application_name = 'sora-backend-listen'")
    assert killed.strip() == "1"
    wait_for(lambda: value(mport, "sora_db_listen_resyncs_total") == 1, timeout=10,
             what="reconnect and resync signal")
    log = b.server.log()
    assert "LISTEN connection to database" in log and "lost" in log and "is back" in log

    n1 = value(mport, "sora_db_notifications_total", channel="sora_mailbox")
    deliver(b, "listen@example.com")
    wait_for(lambda: value(mport, "sora_db_notifications_total", channel="sora_mailbox") > n1,
             what="notifications after the reconnect")


def test_database_restart_is_retried_with_backoff(lmtp_backend, pg):
    b = lmtp_backend
    b.account("restart@example.com")
    mport = free_port()
    b.start(lmtp_extra=f'\n[servers.metrics]\naddr = "127.0.0.1:{mport}"\n')
    wait_for(lambda: "established" in b.server.log(), what="LISTEN up")
    try:
        pg.stop()
        wait_for(lambda: "retrying in" in b.server.log(), timeout=10,
                 what="failed reconnects while the database is down")
        assert b.server.proc.poll() is None
    finally:
        pg.start()
    wait_for(lambda: value(mport, "sora_db_listen_resyncs_total") == 1, timeout=40,
             what="LISTEN back after the restart")
    n = value(mport, "sora_db_notifications_total", channel="sora_mailbox")

    def delivered():
        try:
            deliver(b, "restart@example.com")
            return True
        except AssertionError:
            return False
    wait_for(delivered, timeout=30, interval=0.5, what="delivery after the restart")
    wait_for(lambda: value(mport, "sora_db_notifications_total", channel="sora_mailbox") > n,
             what="notification after the restart")
