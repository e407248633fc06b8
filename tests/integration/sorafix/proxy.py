"""sora-proxy tests: two sora-backends (on 127.0.0.1 and 127.0.0.2, so each
is a host of its own as in production) sharing one database and one blob
directory (standing in for S3), one or more sora-proxies in front, and
HAProxy in front of those (send-proxy-v2).

Each backend has an imap listener that requires a PROXY header from the
loopback network (what proxies with remote_use_proxy_protocol use), an
imap_plain listener without one (for ID forwarding), and an lmtp listener.
Both backends accept master SASL (proxy/proxy) from the loopback network.
"""
import imaplib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request

import pytest

from .common import free_port, wait_for, wait_port, which
from .sora_admin import Admin

MASTER_SASL = ("proxy", "proxy-secret")
HOSTS = ["127.0.0.1", "127.0.0.2"]


def free_port_on(host):
    """As common.free_port, on another loopback address (one set of ports
    handed out for all addresses)."""
    return free_port(host)


class SourceIMAP(imaplib.IMAP4):
    """imaplib from a chosen source address (the 'client address' tests
    look for in the backends' logs)."""

    def __init__(self, host, port, source="127.0.0.3", timeout=15):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        s = socket.socket()
        s.settimeout(timeout)
        s.bind((self._source, 0))
        s.connect((self.host, self.port))
        self.source_port = s.getsockname()[1]
        return s


class Backend:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.i = i
        self.host = HOSTS[i]
        self.name = f"be{i + 1}"
        self.imap_port = free_port_on(self.host)
        self.imap_plain_port = free_port_on(self.host)
        self.lmtp_port = free_port_on(self.host)
        self.lmtp_pp_port = free_port_on(self.host)
        self.pop3_port = free_port_on(self.host)
        self.pop3_plain_port = free_port_on(self.host)
        self.server = None

    def config(self, extra="", imap_extra=""):
        c = self.cluster
        user, pw = MASTER_SASL
        return (f'hostname = "{self.name}"\nevent_loops = 1\nworker_threads = 4\n'
                + c.pg.config_block(c.dbname)
                + '[logging]\nlevel = "info"\nformat = "console"\noutput = "stderr"\n'
                f'[storage]\nbackend = "fs"\nfs_path = "{c.blobs}"\n'
                f'[uploader]\npath = "{c.dir}/staging-{self.name}"\n'
                f'[servers.imap]\naddr = "{self.host}:{self.imap_port}"\n'
                f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n{imap_extra}'
                '[servers.imap.proxy_protocol]\nenabled = true\n'
                'trusted_proxies = ["127.0.0.0/8"]\n'
                f'[servers.imap_plain]\ntype = "imap"\naddr = "{self.host}:{self.imap_plain_port}"\n'
                f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n{imap_extra}'
                f'[servers.pop3]\naddr = "{self.host}:{self.pop3_port}"\n'
                f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                '[servers.pop3.proxy_protocol]\nenabled = true\n'
                'trusted_proxies = ["127.0.0.0/8"]\n'
                f'[servers.pop3_plain]\ntype = "pop3"\naddr = "{self.host}:{self.pop3_plain_port}"\n'
                f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                f'[servers.lmtp]\naddr = "{self.host}:{self.lmtp_port}"\n'
                f'[servers.lmtp_pp]\ntype = "lmtp"\naddr = "{self.host}:{self.lmtp_pp_port}"\n'
                '[servers.lmtp_pp.proxy_protocol]\nenabled = true\n'
                'trusted_proxies = ["127.0.0.0/8"]\n'
                + extra)

    def start(self, extra="", imap_extra=""):
        self.server = self.cluster.sora_servers(
            "sora-backend", self.config(extra, imap_extra), [], name=self.name)
        for p in (self.imap_port, self.imap_plain_port, self.lmtp_port, self.lmtp_pp_port,
                  self.pop3_port, self.pop3_plain_port):
            wait_port(p, host=self.host, proc=self.server.proc, timeout=20)
        return self

    def kill(self):
        self.server.proc.kill()
        self.server.proc.wait()
        self.server.logf.close()

    def deliveries(self):
        """rcpt of every LMTP delivery the backend logged."""
        return re.findall(r"delivered: from=<[^>]*> rcpt=<([^>]*)>", self.server.log())

    def logins(self):
        """(user, client) of every login the backend logged."""
        return re.findall(r"login as (\S+) from (\S+)", self.server.log())


class DovecotSieve:
    """A private Dovecot managesieve on host: PROXY v2 required from the
    loopback network (haproxy = yes), a master user for the proxies
    (MASTER_SASL), any user name, a home of its own per user."""

    def __init__(self, host):
        if shutil.which("dovecot") is None:
            pytest.skip("dovecot is not installed")
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="sora-dovecot-sieve-")
        os.chmod(self.dir, 0o755)
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)
        shutil.chown(self.mail, "nobody", "nogroup")
        self.port = free_port_on(host)
        self.log_path = os.path.join(self.dir, "dovecot.log")
        user, pw = MASTER_SASL
        with open(os.path.join(self.dir, "master.passwd"), "w") as f:
            f.write(f"{user}:{{PLAIN}}{pw}\n")
        conf = os.path.join(self.dir, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""protocols = sieve
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
haproxy_trusted_networks = 127.0.0.0/8
login_trusted_networks = 127.0.0.0/8
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = {self.dir}/master.passwd
  master = yes
}}
passdb {{
  driver = static
  args = password=not-for-users-{os.getpid()}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.mail}/%u allow_all_users=yes
}}
service managesieve-login {{
  inet_listener sieve {{
    address = {host}
    port = {self.port}
    haproxy = yes
  }}
}}
service anvil {{
  chroot =
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
""")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, host=host, proc=self.proc, timeout=20)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.name = f"proxy{i + 1}"
        self.port = free_port()          # direct
        self.hap_port = free_port()      # behind HAProxy (PROXY v2 required)
        self.metrics_port = free_port()
        self.lmtp_port = free_port()
        self.sieve_port = free_port()
        self.sieve_hap_port = free_port()
        self.pop3_port = free_port()
        self.pop3_hap_port = free_port()
        self.server = None

    def config(self, extra="", remote_proxy=True, connect_timeout="3s", backends=None, top="",
               lmtp_remote_proxy=False, max_message_size="1mb", sieve_backends=None):
        c = self.cluster
        user, pw = MASTER_SASL
        bes = backends if backends is not None else c.backends
        remotes = ", ".join(
            f'"{b.host}:{b.imap_port if remote_proxy else b.imap_plain_port}"' for b in bes)
        pop3_remotes = ", ".join(
            f'"{b.host}:{b.pop3_port if remote_proxy else b.pop3_plain_port}"' for b in bes)
        lmtp_remotes = ", ".join(
            f'"{b.host}:{b.lmtp_pp_port if lmtp_remote_proxy else b.lmtp_port}"' for b in bes)
        common = (f'remote_addrs = [{remotes}]\n'
                  f'remote_use_proxy_protocol = {"true" if remote_proxy else "false"}\n'
                  f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                  f'connect_timeout = "{connect_timeout}"\nhealth_check_interval = "500ms"\n'
                  'insecure_auth = true\n')
        return (f'hostname = "{self.name}"\nevent_loops = 2\nworker_threads = 4\n{top}'
                + c.pg.config_block(c.dbname)
                + '[logging]\nlevel = "info"\nformat = "console"\noutput = "stderr"\n'
                f'[servers.imap]\ntype = "imap_proxy"\naddr = "127.0.0.1:{self.port}"\n{common}'
                f'[servers.imap_hap]\ntype = "imap_proxy"\naddr = "127.0.0.1:{self.hap_port}"\n'
                f'{common}'
                '[servers.imap_hap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.1/32"]\n'
                f'[servers.pop3]\ntype = "pop3_proxy"\naddr = "127.0.0.1:{self.pop3_port}"\n'
                + common.replace(f'remote_addrs = [{remotes}]', f'remote_addrs = [{pop3_remotes}]')
                + f'[servers.pop3_hap]\ntype = "pop3_proxy"\naddr = "127.0.0.1:{self.pop3_hap_port}"\n'
                + common.replace(f'remote_addrs = [{remotes}]', f'remote_addrs = [{pop3_remotes}]')
                + '[servers.pop3_hap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.1/32"]\n'
                f'[servers.metrics]\naddr = "127.0.0.1:{self.metrics_port}"\n'
                f'[servers.lmtp]\ntype = "lmtp_proxy"\naddr = "127.0.0.1:{self.lmtp_port}"\n'
                f'remote_addrs = [{lmtp_remotes}]\nmax_message_size = "{max_message_size}"\n'
                f'remote_use_proxy_protocol = {"true" if lmtp_remote_proxy else "false"}\n'
                f'connect_timeout = "{connect_timeout}"\nhealth_check_interval = "500ms"\n'
                + self.sieve_config(sieve_backends, connect_timeout)
                + extra)

    def sieve_config(self, sieve_backends, connect_timeout):
        if not sieve_backends:
            return ""
        user, pw = MASTER_SASL
        remotes = ", ".join(f'"{d.host}:{d.port}"' for d in sieve_backends)
        common = (f'remote_addrs = [{remotes}]\nremote_use_proxy_protocol = true\n'
                  f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
                  f'connect_timeout = "{connect_timeout}"\nhealth_check_interval = "500ms"\n'
                  'insecure_auth = true\n')
        self.wait_ports += [self.sieve_port, self.sieve_hap_port]
        return (f'[servers.sieve]\ntype = "managesieve_proxy"\naddr = "127.0.0.1:{self.sieve_port}"\n'
                f'{common}'
                f'[servers.sieve_hap]\ntype = "managesieve_proxy"\n'
                f'addr = "127.0.0.1:{self.sieve_hap_port}"\n{common}'
                '[servers.sieve_hap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.1/32"]\n')

    def start(self, **kw):
        self.wait_ports = [self.port, self.hap_port, self.lmtp_port, self.pop3_port,
                           self.pop3_hap_port]
        cfg = self.config(**kw)
        self.server = self.cluster.sora_servers("sora-proxy", cfg, self.wait_ports, name=self.name)
        return self

    def login(self, email, password=None, source="127.0.0.3"):
        c = SourceIMAP("127.0.0.1", self.port, source=source)
        c.login(email, password or "pw-" + email)
        return c

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pat = re.compile(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", re.M)
        total = 0.0
        for m in pat.finditer(self.metrics()):
            have = dict(kv.split("=", 1) for kv in m.group(1).split(","))
            if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
                total += float(m.group(2))
        return total


class Cluster:
    def __init__(self, pg, dbname, tmp_path, sora_servers):
        self.pg = pg
        self.dbname = dbname
        self.dir = str(tmp_path)
        self.sora_servers = sora_servers
        self.blobs = os.path.join(self.dir, "blobs")
        self.admin = Admin(pg, dbname, self.dir)
        self.admin.ok("migrate", "up")
        self.backends = [Backend(self, i) for i in range(2)]
        self.proxies = []
        self.haproxy_proc = None
        self.haproxy_port = None

    def start_backends(self, imap_extra=""):
        for b in self.backends:
            b.start(imap_extra=imap_extra)
        return self

    def add_proxy(self, **kw):
        p = Proxy(self, len(self.proxies))
        self.proxies.append(p)
        return p.start(**kw)

    def account(self, email):
        self.admin.ok("accounts", "create", "--email", email, "--password", "pw-" + email,
                      "--hash", "ssha512")
        return int(self.admin.sql(
            f"SELECT account_id FROM credentials WHERE address = '{email}'").strip())

    def backend_of(self, email):
        """The backend whose log has the last login of email (None)."""
        for b in self.backends:
            if b.server and any(u == email for u, _ in b.logins()):
                return b
        return None

    def start_haproxy(self, sieve=False, pop3=False):
        self.haproxy_port = free_port()
        servers = "\n".join(
            f"    server {p.name} 127.0.0.1:"
            f"{p.sieve_hap_port if sieve else p.pop3_hap_port if pop3 else p.hap_port}"
            " send-proxy-v2" for p in self.proxies)
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend f
    bind 127.0.0.1:{self.haproxy_port}
    default_backend b
backend b
    balance roundrobin
{servers}
""")
        self.haproxy_proc = subprocess.Popen([which("haproxy"), "-db", "-f", cfg],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.haproxy_port, proc=self.haproxy_proc)
        return self

    def start_dovecots(self):
        self.dovecots = [DovecotSieve(b.host) for b in self.backends]
        return self.dovecots

    def stop(self):
        if self.haproxy_proc is not None:
            self.haproxy_proc.terminate()
            self.haproxy_proc.wait(10)
        for d in getattr(self, "dovecots", []):
            d.stop()


@pytest.fixture
def cluster(pg, pgdb, tmp_path, sora_servers):
    c = Cluster(pg, pgdb, tmp_path, sora_servers)
    yield c
    c.stop()
