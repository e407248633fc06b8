"""A private PostgreSQL cluster for the test session (see shared TESTING.md)."""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from .common import free_port


def _pg_bindir():
    try:
        return subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not cands:
            pytest.fail("PostgreSQL server binaries not found (deploy/install-deps.sh installs them)")
        return cands[-1]


class PgCluster:
    def __init__(self):
        self.bindir = _pg_bindir()
        if not os.path.exists(os.path.join(self.bindir, "initdb")):
            cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
            self.bindir = os.path.dirname(cands[-1])
        self.dir = tempfile.mkdtemp(prefix="sora-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.host = "127.0.0.1"
        self._as_pg([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                     "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        self.start()

    def _as_pg(self, argv, check=True):
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, check=check, capture_output=True, text=True)

    def start(self):
        self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                     os.path.join(self.dir, "log"), "-w", "-o",
                     f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                     f"-c max_connections=300", "start"])

    def stop(self):
        self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                     "stop"], check=False)

    def psql(self, sql, db="postgres"):
        r = subprocess.run(["psql", "-h", self.host, "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout

    def create_db(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def config_block(self, dbname):
        return (f'[database]\nhost = "{self.host}"\nport = {self.port}\n'
                f'dbname = "{dbname}"\nuser = "postgres"\npassword = ""\nsslmode = "disable"\n')

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    c = PgCluster()
    yield c
    c.destroy()


_db_counter = [0]


@pytest.fixture
def pgdb(pg, request):
    """A fresh, empty database for one test; returns its name."""
    _db_counter[0] += 1
    name = f"sora_t{os.getpid()}_{_db_counter[0]}"
    pg.create_db(name)
    yield name


@pytest.fixture(scope="session")
def shared_db(pg):
    """A [database] config block for tests that need a working backend but
    no data of their own (one database for the whole session)."""
    pg.create_db("sora_shared")
    return pg.config_block("sora_shared")
