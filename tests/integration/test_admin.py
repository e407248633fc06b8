"""sora-admin against a real PostgreSQL: accounts, credentials, passwords,
errors, help, stats and health (docs/admin.md)."""
import re
import subprocess

import pytest

from sorafix.common import bin_path, free_port


def auth_test(a, email, password):
    return a.run("auth", "test", "--email", email, "--password-stdin", input=password + "\n")


def stored_hash(a, email):
    return a.sql(f"SELECT password_hash FROM credentials WHERE lower(address) = lower('{email}')").strip()


def one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines, "no reason on stderr"
    return lines[0]


def test_account_round_trip(admin):
    a = admin
    out = a.ok("accounts", "create", "--email", "Bob@Example.com", "--password", "hunter2")
    assert "created account" in out
    a.ok("accounts", "create", "--email", "alice@example.com", "--password-stdin", input="pw-a\n")

    out = a.ok("accounts", "list")
    assert "Bob@Example.com" in out and "alice@example.com" in out
    assert "2 accounts" in out

    # show finds the account by any case of the address and never prints hashes.
    out = a.ok("accounts", "show", "--email", "bob@EXAMPLE.com")
    assert re.search(r"^Primary:\s+Bob@Example.com$", out, re.M)
    assert re.search(r"^Status:\s+active$", out, re.M)
    assert re.search(r"^Mailboxes:\s+0$", out, re.M)
    assert re.search(r"^Bob@Example.com\s+yes\s+BLF-CRYPT", out, re.M)
    assert "$2" not in out and "{BLF-CRYPT}" not in out

    acc = a.sql("SELECT account_id FROM credentials WHERE address = 'Bob@Example.com'").strip()
    a.sql(f"INSERT INTO mailboxes (account_id, name) VALUES ({acc}, 'INBOX'), ({acc}, 'Sent')")
    out = a.ok("accounts", "show", "--email", "bob@example.com")
    assert re.search(r"^Mailboxes:\s+2$", out, re.M)

    # The password verifies the way the servers check it.
    r = auth_test(a, "BOB@example.com", "hunter2")
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    r = auth_test(a, "bob@example.com", "wrong")
    assert r.returncode == 1 and r.stdout.startswith("FAILED")

    # update: new password from stdin with another scheme.
    a.ok("accounts", "update", "--email", "bob@example.com", "--password-stdin", "--hash", "ssha512",
         input="n3w-pass\n")
    assert stored_hash(a, "bob@example.com").startswith("{SSHA512}")
    assert auth_test(a, "bob@example.com", "hunter2").returncode == 1
    assert auth_test(a, "bob@example.com", "n3w-pass").returncode == 0

    # delete is soft: no login, still listed as deleted, restore undoes it.
    out = a.ok("accounts", "delete", "--email", "bob@example.com")
    r = auth_test(a, "bob@example.com", "n3w-pass")
    assert r.returncode == 1 and "no live account" in r.stdout
    assert "Bob@Example.com" not in a.ok("accounts", "list")
    assert "Bob@Example.com" in a.ok("accounts", "list", "--deleted")
    assert "alice@example.com" not in a.ok("accounts", "list", "--deleted")
    assert "deleted" in a.ok("accounts", "show", "--email", "bob@example.com")
    assert a.sql(f"SELECT count(*) FROM mailboxes WHERE account_id = {acc}").strip() == "2"
    line = one_line_error(a.run("accounts", "delete", "--email", "bob@example.com"), 1)
    assert "already deleted" in line
    # The address stays reserved while the account is deleted.
    line = one_line_error(a.run("accounts", "create", "--email", "bob@example.com", "--password", "x"), 1)
    assert "already exists" in line

    a.ok("accounts", "restore", "--email", "bob@example.com")
    assert auth_test(a, "bob@example.com", "n3w-pass").returncode == 0
    line = one_line_error(a.run("accounts", "restore", "--email", "bob@example.com"), 1)
    assert "not deleted" in line


@pytest.mark.parametrize("scheme,prefix", [
    ("bcrypt", "{BLF-CRYPT}$2"),
    ("ssha512", "{SSHA512}"),
    ("sha512-crypt", "{SHA512-CRYPT}$6$"),
    ("sha256-crypt", "{SHA256-CRYPT}$5$"),
    ("ssha256", "{SSHA256}"),
    ("sha512", "{SHA512}"),
    ("argon2id", "{ARGON2ID}$argon2id$"),
    ("argon2i", "{ARGON2I}$argon2i$"),
])
def test_hash_schemes(admin, scheme, prefix):
    email = f"user-{scheme}@example.com"
    admin.ok("accounts", "create", "--email", email, "--password-stdin", "--hash", scheme,
             input="Sch3me pass\n")
    assert stored_hash(admin, email).startswith(prefix)
    assert auth_test(admin, email, "Sch3me pass").returncode == 0
    assert auth_test(admin, email, "Sch3me pas").returncode == 1


def test_default_hash_is_bcrypt_and_unknown_scheme_refused(admin):
    admin.ok("accounts", "create", "--email", "d@example.com", "--password", "pw")
    assert stored_hash(admin, "d@example.com").startswith("{BLF-CRYPT}$2")
    line = one_line_error(admin.run("accounts", "create", "--email", "e@example.com",
                                    "--password", "pw", "--hash", "md5"), 2)
    assert "unknown --hash scheme" in line
    assert admin.sql("SELECT count(*) FROM credentials WHERE address = 'e@example.com'").strip() == "0"


def test_password_stdin_forms(admin):
    # No trailing newline, CRLF, and characters a shell would mangle.
    admin.ok("accounts", "create", "--email", "s1@example.com", "--password-stdin", input="no-newline")
    assert auth_test(admin, "s1@example.com", "no-newline").returncode == 0
    admin.ok("accounts", "create", "--email", "s2@example.com", "--password-stdin",
             input="crlf pass\r\n")
    assert auth_test(admin, "s2@example.com", "crlf pass").returncode == 0
    admin.ok("accounts", "create", "--email", "s3@example.com", "--password-stdin",
             input="$(x) 'q' \"dq\" \\ ;\n")
    assert auth_test(admin, "s3@example.com", "$(x) 'q' \"dq\" \\ ;").returncode == 0
    # Only the first line counts.
    admin.ok("accounts", "create", "--email", "s4@example.com", "--password-stdin",
             input="first\nsecond\n")
    assert auth_test(admin, "s4@example.com", "first").returncode == 0
    # An empty password is refused, and so is giving both sources.
    r = admin.run("accounts", "create", "--email", "s5@example.com", "--password-stdin", input="\n")
    assert "empty" in one_line_error(r, 2)
    r = admin.run("accounts", "create", "--email", "s6@example.com", "--password", "x",
                  "--password-stdin", input="y\n")
    assert "exactly one" in one_line_error(r, 2)
    r = admin.run("accounts", "create", "--email", "s7@example.com")
    assert "exactly one" in one_line_error(r, 2)


def test_duplicate_address(admin):
    admin.ok("accounts", "create", "--email", "bob@example.com", "--password", "pw")
    for dup in ("bob@example.com", "BOB@Example.COM"):
        r = admin.run("accounts", "create", "--email", dup, "--password", "pw2")
        assert one_line_error(r, 1) == f"sora-admin: address {dup} already exists"
    assert admin.sql("SELECT count(*) FROM accounts").strip() == "1"
    # An alias that collides with another account's address is refused too.
    admin.ok("accounts", "create", "--email", "carol@example.com", "--password", "pw")
    r = admin.run("credentials", "add", "--account", "carol@example.com", "--email", "Bob@example.com",
                  "--password", "pw")
    assert one_line_error(r, 1) == "sora-admin: address Bob@example.com already exists"


@pytest.mark.parametrize("bad", [
    "bob", "bob@", "@example.com", "bob@@example.com", "bob smith@example.com",
    "bob@exa mple.com", "bob@example..com", ".bob@example.com", "bob*master@example.com",
    "bob@[192.0.2.1]", "bob\x01@example.com", "a" * 65 + "@example.com",
])
def test_bad_email_is_usage_error(admin, bad):
    r = admin.run("accounts", "create", "--email", bad, "--password", "pw")
    assert "invalid address" in one_line_error(r, 2)
    assert admin.sql("SELECT count(*) FROM accounts").strip() == "0"


def test_credentials(admin):
    a = admin
    a.ok("accounts", "create", "--email", "main@example.com", "--password", "pw-main")
    out = a.ok("credentials", "add", "--account", "MAIN@example.com", "--email", "alias@example.com",
               "--password-stdin", "--hash", "sha512-crypt", input="pw-alias\n")
    assert "alias@example.com" in out
    out = a.ok("credentials", "list", "--account", "alias@example.com")
    lines = [l for l in out.splitlines()[1:] if l.strip()]
    assert re.match(r"main@example.com\s+yes\s+BLF-CRYPT", lines[0])
    assert re.match(r"alias@example.com\s+no\s+SHA512-CRYPT", lines[1])
    # Each address has its own password; both reach the same account.
    r1 = auth_test(a, "alias@example.com", "pw-alias")
    r2 = auth_test(a, "main@example.com", "pw-main")
    assert r1.returncode == 0 and r2.returncode == 0
    acc = re.search(r"account (\d+)", r2.stdout).group(1)
    assert f"account {acc} " in r1.stdout and "primary main@example.com" in r1.stdout
    assert auth_test(a, "alias@example.com", "pw-main").returncode == 1

    # The primary cannot be deleted; another address must become primary first.
    r = a.run("credentials", "delete", "--email", "main@example.com")
    assert "primary identity" in one_line_error(r, 1)
    a.ok("accounts", "update", "--email", "alias@example.com", "--make-primary")
    assert a.sql("SELECT address FROM credentials WHERE primary_identity").strip() == "alias@example.com"
    a.ok("credentials", "delete", "--email", "MAIN@example.com")
    assert auth_test(a, "main@example.com", "pw-main").returncode == 1
    # The last credential cannot be deleted either.
    r = a.run("credentials", "delete", "--email", "alias@example.com")
    assert "last credential" in one_line_error(r, 1)

    # add --primary moves the primary identity.
    a.ok("credentials", "add", "--account", "alias@example.com", "--email", "new@example.com",
         "--password", "pw-new", "--primary")
    assert a.sql("SELECT address FROM credentials WHERE primary_identity").strip() == "new@example.com"
    r = a.run("credentials", "add", "--account", "nobody@example.com", "--email", "x@example.com",
              "--password", "pw")
    assert one_line_error(r, 1) == "sora-admin: address nobody@example.com not found"
    r = a.run("credentials", "delete", "--email", "nobody@example.com")
    assert one_line_error(r, 1) == "sora-admin: address nobody@example.com not found"


def test_not_found_messages(admin):
    for args in (("accounts", "show", "--email", "ghost@example.com"),
                 ("accounts", "delete", "--email", "ghost@example.com"),
                 ("accounts", "restore", "--email", "ghost@example.com"),
                 ("accounts", "update", "--email", "ghost@example.com", "--password", "x"),
                 ("credentials", "list", "--account", "ghost@example.com")):
        r = admin.run(*args)
        assert one_line_error(r, 1) == "sora-admin: address ghost@example.com not found", args


def test_database_unreachable(pg, pgdb, tmp_path):
    from sorafix.sora_admin import Admin
    a = Admin(pg, pgdb, str(tmp_path))
    port = free_port()
    bad_port = str(tmp_path / "port.toml")
    with open(bad_port, "w") as f:
        f.write(pg.config_block(pgdb).replace(f"port = {pg.port}", f"port = {port}"))
    bad_db = str(tmp_path / "db.toml")
    with open(bad_db, "w") as f:
        f.write(pg.config_block("no_such_db_x"))
    for cmd in (("accounts", "list"), ("migrate", "up"), ("migrate", "status")):
        r = a.run(*cmd, config=bad_port)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1, r.stderr
        assert f"database {pgdb} at 127.0.0.1:{port}" in r.stderr
        assert "Connection refused" in r.stderr

        r = a.run(*cmd, config=bad_db)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1, r.stderr
        assert f"database no_such_db_x at 127.0.0.1:{pg.port}" in r.stderr
        assert 'database "no_such_db_x" does not exist' in r.stderr
    r = a.run("health", config=bad_port)
    assert r.returncode == 1 and "FAILED" in r.stdout
    assert f"database {pgdb} at 127.0.0.1:{port}" in r.stderr


def test_config_errors(admin, tmp_path):
    r = admin.run("accounts", "list", config=str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml" in r.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[database]\nport = \"not a number\"\n")
    r = admin.run("accounts", "list", config=str(broken))
    assert r.returncode == 2 and "broken.toml" in r.stderr


def test_config_after_subcommand(admin):
    admin.ok("accounts", "create", "--email", "late@example.com", "--password", "pw")
    argv = [bin_path("sora-admin"), "accounts", "list", "--config", admin.config]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=admin.workdir)
    assert r.returncode == 0 and "late@example.com" in r.stdout
    argv = [bin_path("sora-admin"), "stats", "auth", f"--config={admin.config}"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=admin.workdir)
    assert r.returncode == 0, r.stderr


COMMANDS = [
    ("migrate", "up"), ("migrate", "status"),
    ("accounts", "create"), ("accounts", "list"), ("accounts", "show"), ("accounts", "update"),
    ("accounts", "delete"), ("accounts", "restore"),
    ("credentials", "add"), ("credentials", "list"), ("credentials", "delete"),
    ("stats", "auth"), ("health",), ("auth", "test"),
]


def test_help_and_version():
    exe = bin_path("sora-admin")

    def run(*args):
        return subprocess.run([exe, *args], capture_output=True, text=True)

    r = run("--version")
    assert r.returncode == 0 and re.match(r"sora-admin \d+\.\d+\.\d+", r.stdout)
    for form in (("--help",), ("help",), ("-h",)):
        r = run(*form)
        assert r.returncode == 0 and "usage:" in r.stdout
        for cmd in COMMANDS:
            assert " ".join(cmd) in r.stdout
    for cmd in COMMANDS:
        for form in (("help", *cmd), (*cmd, "--help")):
            r = run(*form)
            assert r.returncode == 0, (form, r.stderr)
            assert r.stdout.startswith("usage: sora-admin [--config FILE] " + " ".join(cmd))
    for group in ("migrate", "accounts", "credentials", "stats", "auth"):
        r = run("help", group)
        assert r.returncode == 0 and "usage:" in r.stdout
        r = run(group)  # a group alone lacks its subcommand
        assert r.returncode == 2 and "needs a subcommand" in r.stderr
    # No command, unknown commands and options: usage, exit 2.
    assert run().returncode == 2
    for bad in (("frobnicate",), ("accounts", "frob"), ("connections", "list"),
                ("accounts", "list", "--bogus"), ("accounts", "list", "extra"),
                ("accounts", "create", "--email")):
        r = run(*bad)
        assert r.returncode == 2, bad
        assert r.stderr.startswith("sora-admin: "), bad


def test_missing_required_option(admin):
    r = admin.run("accounts", "show")
    assert "--email is required" in one_line_error(r, 2)
    r = admin.run("accounts", "update", "--email", "x@example.com")
    assert "nothing to change" in one_line_error(r, 2)
    r = admin.run("credentials", "add", "--email", "x@example.com", "--password", "p")
    assert "--account is required" in one_line_error(r, 2)


def test_guide_incident_response_stats_auth(admin):
    a = admin
    a.sql("INSERT INTO auth_attempts (ip, failure_count, blocked_until, last_failure_at) VALUES"
          " ('198.51.100.7', 25, now() + interval '10 minutes', now()),"
          " ('198.51.100.8', 3, NULL, now()),"
          " ('198.51.100.9', 40, NULL, now() - interval '3 days')")
    a.sql("INSERT INTO auth_attempts (username, failure_count, last_failure_at) VALUES"
          " ('victim@example.com', 6, now()), (E'evil\\x1b[2J', 2, now())")
    out = a.ok("stats", "auth")
    assert "28 failures from 2 IPs" in out
    assert "8 failures for 2 usernames" in out
    assert re.search(r"blocked now:\s+1", out)
    top_ips = out.split("Top IPs:")[1].split("Top usernames:")[0]
    assert top_ips.index("198.51.100.7") < top_ips.index("198.51.100.8")
    # Each column its own value: the blocked IP shows until when, the other "-".
    assert re.search(r"^\s+198\.51\.100\.7\s+25\s+\S+ \S+ UTC\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$",
                     top_ips, re.M), top_ips
    assert re.search(r"^\s+198\.51\.100\.8\s+3\s+\S+ \S+ UTC\s+-$", top_ips, re.M), top_ips
    assert "198.51.100.9" not in top_ips  # outside the 24h window
    assert "victim@example.com" in out
    # Terminal control bytes from client-chosen usernames are escaped.
    assert "\x1b" not in out and "evil\\x1b[2J" in out
    blocked = out.split("Blocked now:")[1]
    assert "198.51.100.7" in blocked and "198.51.100.8" not in blocked

    out = a.ok("stats", "auth", "--window", "7d", "--top", "1")
    assert "68 failures from 3 IPs" in out
    top_ips = out.split("Top IPs:")[1].split("Top usernames:")[0]
    assert "198.51.100.9" in top_ips and "198.51.100.7" not in top_ips
    r = a.run("stats", "auth", "--window", "soon")
    assert "invalid --window" in one_line_error(r, 2)


def test_health(admin):
    out = admin.ok("health")
    assert re.search(r"^database:\s+ok \(database \S+ at 127\.0\.0\.1:\d+, PostgreSQL", out, re.M)
    assert re.search(r"^migrations:\s+ok", out, re.M)
    # The relative default, resolved against the working directory.
    assert re.search(r"^storage:\s+fs \(path /\S+/var/blobs", out, re.M)
    assert re.search(r"^status:\s+ok$", out, re.M)

    admin.write_config('[storage]\nbackend = "s3"\n[s3]\nendpoint = "127.0.0.1:9"\n'
                       'bucket = "mail"\naccess_key = "k"\nsecret_key = "s"\n')
    out = admin.ok("health")
    assert re.search(r"^storage:\s+s3 \(bucket mail at 127\.0\.0\.1:9", out, re.M)

    # A replica that is down is reported but not fatal.
    admin.write_config(f'\n[[database.read_endpoints]]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    r = admin.run("health")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^replica:\s+WARNING: database \S+ at 127\.0\.0\.1:\d+: cannot connect", r.stdout, re.M)
    assert re.search(r"^status:\s+degraded$", r.stdout, re.M)



def test_health_pending_migrations(admin_empty):
    r = admin_empty.run("health")
    assert r.returncode == 1
    assert re.search(r"^migrations:\s+FAILED: \d+ pending", r.stdout, re.M)
    assert "pending" in one_line_error(r, 1)


def test_auth_test_rehashes_low_cost_bcrypt_from_dovecot(admin):
    """`sora-admin auth test` runs the servers' login check
    (sora_accounts_authenticate), rehash included: a password migrated from
    Dovecot with bcrypt cost 5 is stored again at the default cost (12) by
    the first successful check, and still verifies. A failed check changes
    nothing."""
    import shutil
    a = admin
    doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
    low = subprocess.run([doveadm, "pw", "-s", "BLF-CRYPT", "-r", "5", "-p", "s3cret"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert low.startswith("{BLF-CRYPT}$2y$05$")
    a.ok("accounts", "create", "--email", "old@example.com", "--password", "placeholder")
    a.sql(f"UPDATE credentials SET password_hash = '{low}' WHERE address = 'old@example.com'")

    # A wrong password changes nothing.
    assert auth_test(a, "old@example.com", "wrong").returncode != 0
    assert stored_hash(a, "old@example.com") == low

    r = auth_test(a, "old@example.com", "s3cret")
    assert r.returncode == 0, r.stderr
    upgraded = stored_hash(a, "old@example.com")
    assert upgraded.startswith("{BLF-CRYPT}$2y$12$"), upgraded
    assert auth_test(a, "old@example.com", "s3cret").returncode == 0
    assert auth_test(a, "old@example.com", "wrong").returncode != 0


def doveadm_pw(scheme, password, *extra):
    import shutil
    doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
    return subprocess.run([doveadm, "pw", "-s", scheme, "-p", password, *extra],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "BLF-CRYPT", "SSHA512", "SHA256-CRYPT",
                                    "SSHA256", "SHA512", "ARGON2ID", "CRYPT"])
def test_hash_import_from_doveadm(admin, scheme):
    """A hash made by Dovecot's doveadm pw is stored as it is and verifies."""
    a = admin
    h = doveadm_pw(scheme, "secret")
    email = f"imp-{scheme.lower()}@example.com"
    out = a.ok("accounts", "create", "--email", email, "--hash-import", h)
    shown = "BLF-CRYPT" if scheme == "CRYPT" else scheme  # doveadm's CRYPT is bcrypt
    assert re.search(rf"created account \d+ with primary address {email} \({shown}, imported hash\)", out)
    assert stored_hash(a, email) == h
    r = auth_test(a, email, "secret")
    assert r.returncode == 0 and r.stdout.startswith(f"OK: {email} belongs to account"), r
    r = auth_test(a, email, "Secret")
    assert r.returncode == 1 and "FAILED: wrong password" in r.stdout
    # The hash is never echoed back.
    assert h not in out and h.split("}")[1] not in out


def test_hash_import_forms(admin):
    a = admin
    h = doveadm_pw("SHA512-CRYPT", "secret")
    # From standard input, the recommended form ("-").
    a.ok("accounts", "create", "--email", "stdin@example.com", "--hash-import", "-", input=h + "\n")
    assert stored_hash(a, "stdin@example.com") == h
    assert auth_test(a, "stdin@example.com", "secret").returncode == 0
    # A bare crypt string is stored with its scheme prefix.
    bare = doveadm_pw("SHA512-CRYPT", "bare-pw").split("}", 1)[1]
    assert bare.startswith("$6$")
    a.ok("accounts", "create", "--email", "bare@example.com", "--hash-import", bare)
    assert stored_hash(a, "bare@example.com") == "{SHA512-CRYPT}" + bare
    assert auth_test(a, "bare@example.com", "bare-pw").returncode == 0
    # credentials add: an alias with its own imported password, as primary.
    alias_hash = doveadm_pw("BLF-CRYPT", "alias-pw")
    out = a.ok("credentials", "add", "--account", "stdin@example.com", "--email",
               "alias@example.com", "--hash-import", alias_hash, "--primary")
    assert "added alias@example.com to the account of stdin@example.com as primary identity" \
        " (BLF-CRYPT, imported hash)" in out
    r = auth_test(a, "alias@example.com", "alias-pw")
    assert r.returncode == 0 and "(primary alias@example.com)" in r.stdout
    assert auth_test(a, "stdin@example.com", "secret").returncode == 0
    assert auth_test(a, "alias@example.com", "secret").returncode == 1
    out = a.ok("credentials", "list", "--account", "alias@example.com")
    assert re.search(r"^alias@example\.com\s+yes\s+BLF-CRYPT", out, re.M)
    assert re.search(r"^stdin@example\.com\s+no\s+SHA512-CRYPT", out, re.M)
    # --password still works next to it.
    a.ok("accounts", "create", "--email", "pw@example.com", "--password-stdin", input="pw\n")
    assert auth_test(a, "pw@example.com", "pw").returncode == 0


def test_hash_import_refused(admin):
    """Unsupported schemes and malformed hashes are usage errors that name
    the scheme but never show the hash; nothing is stored."""
    a = admin
    good = doveadm_pw("SHA512-CRYPT", "secret")
    md5 = doveadm_pw("MD5-CRYPT", "secret")
    cases = [
        (md5, "({MD5-CRYPT}): unsupported password scheme"),
        ("{PLAIN}secret", "({PLAIN}): unsupported password scheme"),
        ("{CRYPT}" + md5.split("}", 1)[1], "({CRYPT}$1$): {CRYPT} hash is not bcrypt"),
        (good[:-5], "({SHA512-CRYPT}): SHA-crypt hash has the wrong length"),
        (good.replace("$6$", "$5$", 1), "({SHA512-CRYPT}): SHA512-CRYPT hash does not start with $6$"),
        ("{SSHA512}bm90LWJhc2U2NA", "({SSHA512}): salted digest hash is too short"),
        ("{BLF-CRYPT}$2y$05$tooshort", "({BLF-CRYPT}): bcrypt hash is malformed"),
        ("nonsense", "((no scheme prefix)): stored password hash has no {SCHEME} prefix"),
    ]
    for i, (h, expect) in enumerate(cases):
        email = f"bad{i}@example.com"
        r = a.run("accounts", "create", "--email", email, "--hash-import", h)
        line = one_line_error(r, 2)
        assert line.startswith(f"sora-admin: cannot import the hash for {email} {expect}"), (h, line)
        body = h.split("}", 1)[-1]
        assert body not in r.stderr + r.stdout, h
        r = a.run("credentials", "add", "--account", "x@example.com", "--email", email,
                  "--hash-import", h)
        assert one_line_error(r, 2).startswith(f"sora-admin: cannot import the hash for {email} (")
        assert body not in r.stderr + r.stdout
    assert a.sql("SELECT count(*) FROM credentials").strip() == "0"
    assert a.sql("SELECT count(*) FROM accounts").strip() == "0"

    r = a.run("accounts", "create", "--email", "x@example.com", "--hash-import", good,
              "--password", "p")
    assert "--hash-import replaces --password" in one_line_error(r, 2)
    r = a.run("accounts", "create", "--email", "x@example.com", "--hash-import", good,
              "--hash", "bcrypt")
    assert "--hash-import replaces" in one_line_error(r, 2)
    r = a.run("accounts", "create", "--email", "x@example.com", "--hash-import", "-", input="\n")
    assert "the hash to import is empty" in one_line_error(r, 2)
    r = a.run("accounts", "create", "--email", "x@example.com", "--hash-import", "-",
              input="{SSHA512}" + "A" * 2000 + "\n")
    assert "longer than 1024 bytes" in one_line_error(r, 2)
    # The account address is still checked first.
    r = a.run("accounts", "create", "--email", "not an address", "--hash-import", good)
    assert "invalid address" in one_line_error(r, 2)


def test_unsupported_stored_scheme_is_named(admin):
    """A stored hash of a scheme Sora cannot verify (copied by SQL from an
    old passdb) is reported with its scheme, not a literal {SCHEME}, and not
    as a database failure; the hash is not shown."""
    a = admin
    a.ok("accounts", "create", "--email", "old@example.com", "--password", "placeholder")
    md5 = doveadm_pw("MD5-CRYPT", "s3cret")
    for stored, label, reason in [
            (md5, "{MD5-CRYPT}", "unsupported password scheme"),
            ("{CRYPT}" + md5.split("}", 1)[1], "{CRYPT}$1$", "{CRYPT} hash is not bcrypt"),
            ("{PLAIN}s3cret", "{PLAIN}", "unsupported password scheme")]:
        a.sql(f"UPDATE credentials SET password_hash = '{stored}' WHERE address = 'old@example.com'")
        r = auth_test(a, "old@example.com", "s3cret")
        line = one_line_error(r, 1)
        assert line.startswith(f"sora-admin: the stored password hash of old@example.com ({label})"
                               f" is unusable: {reason}"), line
        assert "database" not in line and "{SCHEME}" not in line
        assert stored.split("}", 1)[1] not in r.stderr + r.stdout


def test_guide_incident_response_blocks_and_unblock(admin):
    a = admin
    a.sql("INSERT INTO auth_attempts (ip, username, failure_count, blocked_until, last_protocol) VALUES"
          " ('198.51.100.7', NULL, 25, now() + interval '10 minutes', 'imap'),"
          " ('198.51.100.8', NULL, 3, NULL, 'pop3'),"
          " ('2001:db8::5', NULL, 12, now() + interval '5 minutes', 'imap'),"
          " ('203.0.113.1', NULL, 30, now() - interval '1 minute', 'imap'),"
          " (NULL, 'Victim@Example.com', 6, now() + interval '15 minutes', 'pop3'),"
          " (NULL, E'evil\\x1b[2J', 9, now() + interval '15 minutes', NULL),"
          " (NULL, 'other@example.com', 2, NULL, 'imap')")
    out = a.ok("auth", "blocks")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["IP", "USERNAME", "FAILURES", "BLOCKED", "UNTIL", "PROTOCOL"]
    assert lines[-1] == "4 blocked"
    body = "\n".join(lines[1:-1])
    assert re.search(r"^198\.51\.100\.7\s+-\s+25\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+imap$", body, re.M)
    assert re.search(r"^2001:db8::5\s+-\s+12\s", body, re.M)
    assert re.search(r"^-\s+Victim@Example\.com\s+6\s", body, re.M)
    assert "\x1b" not in out and "evil\\x1b[2J" in out
    # Not blocked (never, or no longer).
    assert "198.51.100.8" not in out and "203.0.113.1" not in out and "other@" not in out

    out = a.ok("auth", "unblock", "--ip", "198.51.100.7")
    assert "removed: ip 198.51.100.7, username -, 25 failures, was blocked" in out
    assert "1 row removed, 1 of them blocking" in out
    # Any case, and the username row only.
    out = a.ok("auth", "unblock", "--user", "victim@example.COM")
    assert "removed: ip -, username Victim@Example.com, 6 failures, was blocked" in out
    # A CIDR range takes every address in it; unblocked rows go too.
    out = a.ok("auth", "unblock", "--ip", "198.51.100.0/24")
    assert "removed: ip 198.51.100.8, username -, 3 failures\n" in out
    # Both options: rows of either.
    out = a.ok("auth", "unblock", "--ip", "2001:db8::5", "--user", "other@example.com")
    assert "2 rows removed, 1 of them blocking" in out
    out = a.ok("auth", "unblock", "--ip", "198.51.100.7")
    assert out.strip() == "nothing to unblock: no auth_attempts rows for IP 198.51.100.7"
    assert a.sql("SELECT count(*) FROM auth_attempts WHERE ip = '203.0.113.1'"
                 " OR username LIKE 'evil%'").strip() == "2"
    assert a.sql("SELECT count(*) FROM auth_attempts").strip() == "2"
    out = a.ok("auth", "blocks")
    assert out.strip().splitlines()[-1] == "1 blocked"
    assert re.search(r"blocked now:\s+1", a.ok("stats", "auth"))

    r = a.run("auth", "unblock")
    assert "give --ip and/or --user" in one_line_error(r, 2)
    r = a.run("auth", "unblock", "--ip", "198.51.100.300")
    assert "invalid --ip" in one_line_error(r, 2)
    r = a.run("auth", "unblock", "--user", "")
    assert "--user needs a user name" in one_line_error(r, 2)
