"""deploy/postfix-main.cf.snippet creates no backscatter: with its recipient
validation (reject_unverified_recipient, probing over the LMTP transport), a
real Postfix refuses an unknown recipient at RCPT time with 550, while the
sender is still connected, instead of accepting the message and bouncing it
later to a possibly forged sender. Known recipients are accepted and
delivered; while sora-backend is unreachable a new recipient gets 450 (the
sender retries), never a 250.

The private Postfix is the one test_lmtp_postfix.py runs; its main.cf gets
every setting of the snippet except the two that name the environment
(virtual_mailbox_domains, virtual_transport), so the test checks the
documented lines themselves."""
import os
import re
import shutil
import smtplib

import pytest

from sorafix.common import ROOT, wait_for
from test_lmtp_postfix import Postfix

SNIPPET = os.path.join(ROOT, "deploy", "postfix-main.cf.snippet")
ENVIRONMENT = {"virtual_mailbox_domains", "virtual_transport"}


def snippet_settings():
    """The snippet's main.cf parameters (continuation lines joined)."""
    settings, key = {}, None
    with open(SNIPPET) as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key is not None:
                settings[key] += " " + line.strip()
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            settings[key] = value.strip()
    return settings


def test_snippet_validates_recipients():
    s = snippet_settings()
    assert "reject_unverified_recipient" in s.get("smtpd_recipient_restrictions", "")
    assert s.get("unverified_recipient_reject_code") == "550"
    assert ENVIRONMENT <= set(s)


def postfix_with_snippet(lmtp_port, socket_path):
    pf = Postfix(lmtp_port, socket_path)
    # A later line wins in main.cf: the snippet overrides the test defaults.
    with open(os.path.join(pf.etc, "main.cf"), "a") as f:
        f.write("\n# deploy/postfix-main.cf.snippet\n")
        for k, v in snippet_settings().items():
            if k not in ENVIRONMENT:
                f.write(f"{k} = {v}\n")
        # The probes' cache, in the private instance's data directory.
        f.write("address_verify_poll_delay = 1s\n")
    return pf


def rcpt(s, address):
    code, msg = s.rcpt(address)
    return code, msg.decode("utf-8", "replace")


def test_unknown_recipient_rejected_at_rcpt(lmtp_backend):
    b = lmtp_backend
    alice = b.account("alice@example.com")
    pf = None
    try:
        b.start()
        pf = postfix_with_snippet(b.port, "/nonexistent/lmtp.sock")
        pf.start()
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=60) as s:
            s.ehlo("client.test")
            assert s.mail("sender@example.net")[0] == 250
            code, msg = rcpt(s, "ghost@example.com")
            assert code == 550, (code, msg)
            assert "ghost@example.com" in msg and "5.1.1" in msg, msg
            # Cached: the second try is refused at once, the same way.
            assert rcpt(s, "Ghost@example.com")[0] == 550
            code, msg = rcpt(s, "alice@example.com")
            assert code == 250, (code, msg)
            assert s.data(b"Subject: validated\r\n\r\nhello\r\n")[0] == 250
        wait_for(lambda: len(b.messages(alice)) == 1, timeout=60, what="the delivery to alice")
        wait_for(pf.queue_empty, timeout=30, what="Postfix queue to drain")
        log = pf.maillog()
        # Postfix asked Sora (a probe over LMTP), and never bounced anything.
        assert re.search(r"to=<ghost@example.com>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*"
                         r"status=undeliverable", log), log
        assert "status=bounced" not in log and "sender non-delivery notification" not in log, log
        assert re.search(r"NOQUEUE: reject: RCPT from .*550 5\.1\.1 <ghost@example\.com>", log), log
        assert "rcpt=<ghost@example.com>: unknown recipient" in b.server.log()
    finally:
        if pf is not None:
            pf.stop()
        if b.server is not None:
            b.server.stop()


def test_recipient_deferred_while_sora_is_down(lmtp_backend):
    b = lmtp_backend
    b.account("bob@example.com")
    pf = None
    try:
        b.start()
        b.server.stop()          # LMTP port now refuses connections
        pf = postfix_with_snippet(b.port, "/nonexistent/lmtp.sock")
        pf.start()
        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=60) as s:
            s.ehlo("client.test")
            assert s.mail("sender@example.net")[0] == 250
            for address in ("bob@example.com", "nobody@example.com"):
                code, msg = rcpt(s, address)
                assert code == 450, (address, code, msg)
        assert pf.queue_empty()
    finally:
        if pf is not None:
            pf.stop()
