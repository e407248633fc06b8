"""sora-admin runner: a config pointing at a fresh test database."""
import os
import subprocess

import pytest

from .common import bin_path


class Admin:
    def __init__(self, pg, dbname, workdir):
        self.pg = pg
        self.dbname = dbname
        self.workdir = workdir
        self.config = os.path.join(workdir, "admin.toml")
        self.write_config()

    def write_config(self, extra=""):
        with open(self.config, "w") as f:
            f.write(self.pg.config_block(self.dbname) + extra)

    def run(self, *args, input=None, config=None, timeout=60):
        """Runs sora-admin --config CONFIG ARGS; returns CompletedProcess (text)."""
        argv = [bin_path("sora-admin"), "--config", config or self.config, *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout, cwd=self.workdir)

    def ok(self, *args, input=None):
        r = self.run(*args, input=input)
        assert r.returncode == 0, f"sora-admin {' '.join(args)} -> {r.returncode}: {r.stderr}"
        return r.stdout

    def sql(self, query):
        return self.pg.psql(query, db=self.dbname)


@pytest.fixture
def admin(pg, pgdb, tmp_path):
    """sora-admin against a fresh database with the schema applied."""
    a = Admin(pg, pgdb, str(tmp_path))
    a.ok("migrate", "up")
    return a


@pytest.fixture
def admin_empty(pg, pgdb, tmp_path):
    """sora-admin against a fresh database without any migration."""
    return Admin(pg, pgdb, str(tmp_path))
