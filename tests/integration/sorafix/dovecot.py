"""A private, unprivileged Dovecot 2.3 IMAP instance (see shared TESTING.md).

Used as a reference server: the imaptest script runner is validated against
it. Any user name logs in with the password DovecotIMAP.PASSWORD and gets its
own empty maildir, so a fresh user per test means a fresh mailbox store.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from .common import free_port, wait_port


class DovecotIMAP:
    PASSWORD = "pass"

    def __init__(self, extra_conf=""):
        if shutil.which("dovecot") is None:
            pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
        self.dir = tempfile.mkdtemp(prefix="sora-dovecot-")
        os.chmod(self.dir, 0o755)
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)
        shutil.chown(self.mail, "nobody", "nogroup")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""protocols = imap
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log_path}
ssl = no
disable_plaintext_auth = no
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
mailbox_list_index = yes
passdb {{
  driver = static
  args = password={self.PASSWORD}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.mail}/%n allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
{extra_conf}
""")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc, timeout=20)
        except Exception:
            self.stop()
            raise

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dovecot_imap():
    d = DovecotIMAP()
    yield d
    d.stop()
