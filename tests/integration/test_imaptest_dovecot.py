"""Proves the imaptest script runner (sorafix/imaptest.py) against Dovecot 2.3.

Not part of the default run: set SORA_IMAPTEST_DOVECOT=1. Every script in
conformance/imaptest runs against a private Dovecot started for this module,
each as a fresh user (so with an empty mailbox store). Dovecot passes every
script it has the capabilities for, so a failure here is a runner bug.

    SORA_IMAPTEST_DOVECOT=1 /usr/bin/python3 -m pytest -q tests/integration/test_imaptest_dovecot.py
"""
import itertools
import os

import pytest

from sorafix import imaptest
from sorafix.dovecot import DovecotIMAP

pytestmark = [
    pytest.mark.skipif(os.environ.get("SORA_IMAPTEST_DOVECOT") != "1",
                       reason="imaptest-vs-Dovecot runner validation: set SORA_IMAPTEST_DOVECOT=1"),
]

# URLAUTH (RFC 4467) needs Dovecot's imap-urlauth services and a place for
# the URLAUTH keys (mailbox attributes).
URLAUTH_CONF = """
imap_urlauth_host = *
mail_attribute_dict = file:%h/dovecot-attributes
"""

# Scripts this Dovecot setup cannot run, with the reason.
EXCLUDE = {
    "urlauth2": "cross-user URLFETCH: Dovecot's imap-urlauth-login aborts (signal 6) in this "
                "unprivileged test instance, so URLFETCH by user 2 answers NO Internal error; "
                "same-user URLAUTH (urlauth, urlauth-binary) passes",
}

_users = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot():
    d = DovecotIMAP(extra_conf=URLAUTH_CONF)
    yield d
    d.stop()


def fresh_users(name):
    """Per-script reset: new user names are new, empty maildirs."""
    n = next(_users)
    return {"user": "it%d-%s" % (n, name), "user2": "it%d-%s-2" % (n, name)}


@pytest.mark.parametrize("name", imaptest.list_scripts())
def test_script(dovecot, name):
    res = imaptest.run_scripts(dovecot.host, dovecot.port, "unused", DovecotIMAP.PASSWORD,
                               include=[name], exclude=EXCLUDE, reset=fresh_users,
                               password2=DovecotIMAP.PASSWORD, timeout=30)[name]
    if res.status in ("skipped", "excluded"):
        pytest.skip("%s: %s" % (res.status, res.reason))
    assert res.status == "passed", res.details(transcript_lines=60)


def test_run_scripts_summary(dovecot):
    """The helper a Sora test calls: one call, every script, a summary."""
    res = imaptest.run_scripts(dovecot.host, dovecot.port, "unused", DovecotIMAP.PASSWORD,
                               exclude=dict(EXCLUDE, id="example exclusion with a reason"),
                               reset=fresh_users, password2=DovecotIMAP.PASSWORD, timeout=30)
    summary = imaptest.format_results(res)
    print(summary)
    assert res["id"].status == "excluded" and res["id"].reason
    assert not [r.name for r in res.values() if r.status == "failed"], summary
    assert sum(r.status == "passed" for r in res.values()) >= 60, summary


def test_runner_detects_failures_and_sync_literals(dovecot, tmp_path):
    """Negative control: a wrong expected reply fails, with the command and
    what the server said; scripts with literals pass without LITERAL+."""
    import shutil
    src = imaptest.DEFAULT_DIR
    for n in ("default.mbox", "search-sets", "catenate", "multiappend"):
        shutil.copy(os.path.join(src, n), tmp_path / n)
    p = tmp_path / "search-sets"
    p.chmod(0o644)
    p.write_text(p.read_text().replace("* search 1 2 4\n", "* search 1 2 5\n"))
    res = imaptest.run_scripts(dovecot.host, dovecot.port, "unused", DovecotIMAP.PASSWORD,
                               directory=str(tmp_path), reset=fresh_users, literal_plus=False)
    bad = res["search-sets"]
    assert bad.status == "failed"
    text = bad.details()
    assert "* search 1 2 5" in text and "SEARCH 1 2 4" in text and "search uid" in text
    assert res["catenate"].status == "passed", res["catenate"].details()
    assert res["multiappend"].status == "passed", res["multiappend"].details()
