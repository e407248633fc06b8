"""The imaptest conformance scripts (conformance/imaptest, format in its
FORMAT.md) against sora-backend's IMAP server, one pytest case per script.

The runner (sorafix/imaptest.py) is proven against Dovecot 2.3 in
test_imaptest_dovecot.py (69 of 71 pass there). A script whose required
capabilities Sora does not advertise is skipped by the runner and the skip
names the capability; a script may only be excluded here with a written
reason. Each script runs as a fresh account (a fresh mailbox tree).
"""
import itertools

import pytest

from sorafix import imaptest
from sorafix.common import free_port
from sorafix.imap import ImapBackend

# Scripts that cannot pass yet, each with the reason. Extensions that are
# not advertised (THREAD, CONTEXT=SORT, NOTIFY, URLAUTH,
# CATENATE) are skipped by the runner on their own.
EXCLUDE = {
}

_users = itertools.count(1)


@pytest.fixture(scope="module")
def backend(pg, tmp_path_factory):
    dbname = "imaptest_%d" % free_port()
    pg.create_db(dbname)
    tmp = tmp_path_factory.mktemp("imaptest")
    servers = []

    def make(binary, config_text, wait_ports=(), name=None):
        from sorafix.common import SoraServer as S, bin_path
        s = S(bin_path(binary), str(tmp), config_text, name=name or binary)
        s.start(wait_ports)
        servers.append(s)
        return s

    b = ImapBackend(pg, dbname, tmp, make)
    b.start()
    b.accounts = {}
    yield b
    for s in servers:
        s.stop()
    # As sora_servers does: an ASan build's reports fail the run.
    for s in servers:
        text = s.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, f"sanitizer report in {s.log_path}:\n{text[-4000:]}"


def _fresh(backend, name):
    n = next(_users)
    users = {}
    for key in ("user", "user2"):
        email = "it%d-%s%s@example.com" % (n, name.replace("_", "-"), "-2" if key == "user2" else "")
        backend.admin.ok("accounts", "create", "--email", email, "--password", "pw", "--hash", "ssha512")
        users[key] = email
    return users


@pytest.mark.parametrize("name", imaptest.list_scripts())
def test_script(backend, name):
    res = imaptest.run_scripts("127.0.0.1", backend.imap_port, "unused", "pw",
                               include=[name], exclude=EXCLUDE,
                               reset=lambda n: _fresh(backend, n), password2="pw",
                               timeout=30)[name]
    if res.status in ("skipped", "excluded"):
        pytest.skip("%s: %s" % (res.status, res.reason))
    assert res.status == "passed", res.details(transcript_lines=80)
