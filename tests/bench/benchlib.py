"""Shared pieces of the benchmarks that run Sora against Dovecot.

- process accounting (/proc): process trees, CPU, RSS and PSS;
- Sora: a private, durable PostgreSQL cluster (fsync on, the server's
  defaults), a sora-backend with the servers asked for, accounts made with
  sora-admin (ssha512, cheap to verify);
- Dovecot 2.3: an unprivileged foreground test instance (maildir, static
  passdb/userdb, base/state/log under the work directory).

Used by lmtp_bench.py and imap_bench.py.
"""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from sorafix.common import free_port, wait_port  # noqa: E402,F401
from sorafix.pg import PgCluster  # noqa: E402

BIN = os.environ.get("SORA_BIN", os.path.join(ROOT, "bin"))
TICK = os.sysconf("SC_CLK_TCK")


# ---- processes ----

def proc_table():
    """{pid: (ppid, stat fields)} of every live process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(pid)] = (int(fields[1]), fields)
    return out


def tree_pids(root, table=None):
    """root and its descendants (only this run's processes, never another
    server of the same kind on the machine)."""
    table = table if table is not None else proc_table()
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu(root):
    """CPU seconds used by a process tree: every live process's own time
    plus what its reaped children used (cutime/cstime), so processes that
    exited still count and nothing counts twice."""
    table = proc_table()
    return sum(sum(int(x) for x in table[p][1][11:15]) / TICK for p in tree_pids(root, table))


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _status_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pids):
    """Summed VmRSS (shared pages count once per process)."""
    return sum(_status_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)


def pss_kb(pids):
    """Summed proportional set size (shared pages divided among sharers)."""
    return sum(_status_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)


def raise_nofile():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


# ---- Sora ----

def durable_pg(max_connections=100):
    """A private cluster with PostgreSQL's defaults, fsync and
    synchronous_commit on (the test fixture's fsync=off would flatter
    Sora)."""
    pg = PgCluster()
    try:
        pg.stop()
        pg._as_pg([os.path.join(pg.bindir, "pg_ctl"), "-D", pg.data, "-l",
                   os.path.join(pg.dir, "log"), "-w", "-o",
                   f"-p {pg.port} -k {pg.dir} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections={max_connections}", "start"])
    except BaseException:
        pg.destroy()
        raise
    return pg


class Sora:
    """sora-backend on a durable private cluster.

    servers: {name: extra config lines}; the server type is the name
    ("lmtp", "imap"); each gets a free port in self.ports[name], and
    self.port is the first one's. Accounts user0..user{accounts-1}@example.com
    with password "x" (user0 made by sora-admin, the rest copied from it in
    one statement)."""
    name = "sora-backend"

    def __init__(self, tmp, servers, accounts=1, top="", pg_max_connections=100):
        self.tmp = tmp
        self.proc = None
        self.log = None
        self.pg = None
        try:
            self.pg = durable_pg(pg_max_connections)
            self._setup(servers, accounts, top)
        except BaseException:
            # Nothing may outlive the run, not even after a failed start.
            self.close()
            raise

    def _setup(self, servers, accounts, top):
        tmp = self.tmp
        self.pg.create_db("bench")
        self.cfg = os.path.join(tmp, "sora.toml")
        self.ports = {name: free_port() for name in servers}
        self.port = self.ports[next(iter(servers))]
        # Default log level (info), as Dovecot runs at its default.
        with open(self.cfg, "w") as f:
            f.write('hostname = "mx.bench"\n' + top + self.pg.config_block("bench") +
                    f'[storage]\nbackend = "fs"\nfs_path = "{tmp}/blobs"\n'
                    f'[uploader]\npath = "{tmp}/staging"\n')
            for name, extra in servers.items():
                f.write(f'[servers.{name}]\naddr = "127.0.0.1:{self.ports[name]}"\n{extra}')
        admin = os.path.join(BIN, "sora-admin")
        subprocess.run([admin, "--config", self.cfg, "migrate", "up"], check=True,
                       capture_output=True)
        subprocess.run([admin, "--config", self.cfg, "accounts", "create", "--email",
                        "user0@example.com", "--password", "x", "--hash", "ssha512"],
                       check=True, capture_output=True)
        if accounts > 1:
            self.pg.psql(f"""WITH a AS (INSERT INTO accounts SELECT FROM generate_series(1, {accounts - 1})
                                RETURNING id)
                             INSERT INTO credentials (account_id, address, password_hash,
                                                      primary_identity)
                             SELECT a.id, 'user' || (row_number() OVER (ORDER BY a.id)) || '@example.com',
                                    (SELECT password_hash FROM credentials LIMIT 1), true FROM a""",
                         db="bench")
        self.log = open(os.path.join(tmp, "sora.log"), "a")
        self.start()
        with open(os.path.join(self.pg.data, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def sql(self, q):
        return self.pg.psql(q, db="bench")

    def start(self):
        self.proc = subprocess.Popen([os.path.join(BIN, "sora-backend"), "--config", self.cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp)
        for p in self.ports.values():
            wait_port(p, proc=self.proc)

    def stop_backend(self):
        self.proc.terminate()
        self.proc.wait()

    def roots(self):
        return (self.proc.pid, self.postmaster)

    def pending(self):
        return int(self.sql("SELECT count(*) FROM pending_uploads"))

    def settle(self):
        """Waits until the uploader has nothing left (its work belongs to
        the deliveries that caused it)."""
        for _ in range(600):
            if self.pending() == 0:
                return
            time.sleep(0.1)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.stop_backend()
        if self.log is not None:
            self.log.close()
        if self.pg is not None:
            self.pg.destroy()


# ---- Dovecot ----

class Dovecot:
    """A Dovecot 2.3 test instance: maildir under {base}/mail/<user>/Maildir
    owned by nobody, mail_fsync = optimized (its default), static passdb
    (password, or nopassword=y when password is None) and userdb.
    conf: the protocol's service blocks and any other settings; may use
    {port} for a free port (self.port)."""

    def __init__(self, tmp, protocols, conf, name, password=None, wait_timeout=20):
        self.name = name
        self.base = os.path.join(tmp, "dovecot")
        self.mail = os.path.join(self.base, "mail")
        os.makedirs(self.mail)
        shutil.chown(self.mail, "nobody", "nogroup")
        self.port = free_port()
        self.conf = os.path.join(self.base, "dovecot.conf")
        passdb = "nopassword=y" if password is None else f"password={password}"
        with open(self.conf, "w") as f:
            f.write(f"""protocols = {protocols}
base_dir = {self.base}/run
state_dir = {self.base}/state
log_path = {self.base}/dovecot.log
ssl = no
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:{self.mail}/%n/Maildir
mail_fsync = optimized
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {{
  driver = static
  args = {passdb}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.mail}/%n allow_all_users=yes
}}
""" + conf.replace("{port}", str(self.port)))
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc, timeout=wait_timeout)
        except BaseException:
            self.close()
            raise

    def maildir(self, user):
        return os.path.join(self.mail, user, "Maildir")

    def roots(self):
        return (self.proc.pid,)

    def settle(self):
        pass

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- reporting, shared by the Sora-vs-Dovecot benchmarks ----

def mmm(v, f):
    """min / median / max of v, each formatted with f."""
    return " / ".join(f % x for x in (min(v), statistics.median(v), max(v)))


def dovecot_version():
    r = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return r.stdout.split()[0] if r.stdout else "?"


def ratio_table(first_line, rows, results, sora_name, dovecot_name, markdown=None):
    """Prints (and writes to markdown, if given) first_line and the table
    of rows (key, label, unit, scale, format) from results[(key, name)]:
    min / median / max of each side and the ratio of the medians."""
    lines = [first_line, "",
             "| test | unit | Sora min / median / max | Dovecot min / median / max | "
             "ratio Sora/Dovecot (medians) |",
             "|---|---|---|---|---|"]
    for key, label, unit, scale, f in rows:
        s, d = results.get((key, sora_name)), results.get((key, dovecot_name))
        if not s or not d:
            continue
        s = [x * scale for x in s]
        d = [x * scale for x in d]
        md = statistics.median(d)
        ratio = statistics.median(s) / md if md else float("nan")
        lines.append(f"| {label} | {unit} | {mmm(s, f)} | {mmm(d, f)} | {ratio:.2f} |")
    print("\n".join(lines))
    if markdown:
        with open(markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
