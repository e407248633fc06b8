"""The HTTP admin API (docs/api.md) served by a real sora-backend and a real
sora-proxy: bearer key, allowed_hosts, TLS, every endpoint's happy path and
errors, the same operation through sora-admin and through the API, and a
kick through the proxy's API closing a live IMAP session."""
import http.client
import imaplib
import json
import re
import socket
import subprocess

import pytest

from sorafix.common import free_port, wait_for, wait_port, which

KEY = "0123456789abcdef0123456789abcdef-test-key"
V1 = "/api/v1"


def api_block(port, extra=""):
    return (f'[servers.api]\ntype = "http_api"\naddr = "127.0.0.1:{port}"\n'
            f'api_key = "{KEY}"\n{extra}')


class Api:
    def __init__(self, port, server, host="127.0.0.1"):
        self.port = port
        self.host = host
        self.server = server

    def call(self, method, path, body=None, key=KEY, raw=None, headers=None):
        """Returns (status, headers, parsed JSON or None)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        c.request(method, V1 + path, body=data, headers=h)
        r = c.getresponse()
        text = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        parsed = None
        if text:
            assert hdrs.get("content-type") == "application/json", (hdrs, text)
            parsed = json.loads(text.decode("utf-8"))  # strict: the body is valid UTF-8 JSON
        return r.status, hdrs, parsed

    def ok(self, method, path, body=None, status=200):
        st, _, j = self.call(method, path, body)
        assert st == status, (method, path, st, j)
        return j

    def err(self, method, path, status, body=None, **kw):
        st, h, j = self.call(method, path, body, **kw)
        assert st == status, (method, path, st, j)
        assert set(j) == {"error"} and j["error"], j
        return j["error"], h


def start_backend(c, extra=""):
    port = free_port()
    be = c.backends[0]
    be.start(extra=api_block(port, extra))
    wait_port(port, proc=be.server.proc)
    return Api(port, be.server)


def curl(*args, timeout=30):
    return subprocess.run([which("curl"), "-sS", "--max-time", "20", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_guide_api_security_key_required(cluster):
    api = start_backend(cluster)
    # No key, a wrong key, a key with a suffix, another scheme: 401 with
    # WWW-Authenticate, and a JSON error that says nothing more.
    for key, hdrs in ((None, None), ("wrong", None), (KEY + "x", None), (KEY[:-1], None),
                      (None, {"Authorization": f"Basic {KEY}"}),
                      (None, {"Authorization": KEY})):
        msg, h = api.err("GET", "/health", 401, key=key, headers=hdrs)
        assert h["www-authenticate"].startswith("Bearer"), h
        assert msg == "missing or invalid API key"
    # A 401 comes before anything else: an unknown path or a huge body too.
    api.err("GET", "/nope", 401, key="wrong")
    api.err("POST", "/accounts", 401, key=None, raw=b"x" * 200000)
    j = api.ok("GET", "/health")
    assert j["status"] == "ok" and j["database"]["reachable"] is True
    assert re.match(r"\d+\.\d+\.\d+", j["version"]) and j["database"]["version"]
    # curl, as in docs/api.md.
    r = curl("-H", f"Authorization: Bearer {KEY}", f"http://127.0.0.1:{api.port}{V1}/health")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "ok", r.stderr
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{api.port}{V1}/health")
    assert r.stdout == "401"
    # Requests are logged (method, path, status, client), never the key.
    log = api.server.log()
    assert re.search(r"http api \[servers\.api\]: GET /api/v1/health -> 401 \(client 127\.0\.0\.1", log)
    assert re.search(r"GET /api/v1/health -> 200 \(client 127\.0\.0\.1", log)
    assert KEY not in log


def test_guide_api_security_allowed_hosts(cluster):
    # Only 127.0.0.2 may connect; the listener is on 127.0.0.1.
    api = start_backend(cluster, 'allowed_hosts = ["127.0.0.2/32"]\n')
    r = curl("-H", f"Authorization: Bearer {KEY}", f"http://127.0.0.1:{api.port}{V1}/health")
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout)
    # The connection is closed at accept: not a byte of HTTP comes back.
    s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    s.close()
    r = curl("--interface", "127.0.0.2", "-H", f"Authorization: Bearer {KEY}",
             f"http://127.0.0.1:{api.port}{V1}/health")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "ok", r.stderr
    api.server.wait_log("not in allowed_hosts")


def test_guide_api_security_tls(cluster, certs):
    api = start_backend(cluster, f'tls = true\ntls_cert_file = "{certs.server_chain}"\n'
                                 f'tls_key_file = "{certs.server_key}"\n')
    url = f"https://127.0.0.1:{api.port}{V1}/health"
    r = curl("--cacert", certs.ca_crt, "-H", f"Authorization: Bearer {KEY}", url)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "ok", r.stderr
    r = curl("--cacert", certs.ca_crt, "-o", "/dev/null", "-w", "%{http_code}", url)
    assert r.stdout == "401"
    # Plain HTTP to the TLS port gets no HTTP answer.
    r = curl("-H", f"Authorization: Bearer {KEY}", f"http://127.0.0.1:{api.port}{V1}/health")
    assert r.returncode != 0 or "status" not in r.stdout
    # An untrusted certificate is refused by the client (it is the server's).
    r = curl("-H", f"Authorization: Bearer {KEY}", url)
    assert r.returncode == 60, (r.returncode, r.stderr)


def test_accounts_and_credentials(cluster):
    c = cluster
    api = start_backend(c)
    j = api.ok("POST", "/accounts", {"email": "Ann@Example.com", "password": "pw-ann",
                                     "hash": "ssha512"}, status=201)
    assert j["primary_address"] == "Ann@Example.com" and j["scheme"] == "SSHA512" and j["id"] > 0
    acc = j["id"]
    # The account logs in as the CLI checks it.
    r = c.admin.run("auth", "test", "--email", "ann@example.com", "--password-stdin", input="pw-ann\n")
    assert r.returncode == 0, r.stdout + r.stderr
    msg, _ = api.err("POST", "/accounts", 409, {"email": "ann@EXAMPLE.com", "password": "x"})
    assert "already exists" in msg

    lst = api.ok("GET", "/accounts")
    assert lst["count"] == 1 and lst["accounts"][0]["primary_address"] == "Ann@Example.com"
    assert lst["accounts"][0]["status"] == "active"
    show = api.ok("GET", "/accounts/ann@example.com")
    assert show["id"] == acc and show["backend"] is None and show["mailboxes"] == 0
    assert [x["address"] for x in show["credentials"]] == ["Ann@Example.com"]
    assert show["credentials"][0]["scheme"] == "SSHA512"
    assert "$" not in json.dumps(show) and "{SSHA512}" not in json.dumps(show)

    # Credentials: add, list, delete.
    j = api.ok("POST", "/accounts/ann@example.com/credentials",
               {"email": "alias@example.com", "password": "pw-alias"}, status=201)
    assert j == {"address": "alias@example.com", "primary": False, "scheme": "BLF-CRYPT"}
    creds = api.ok("GET", "/accounts/alias@example.com/credentials")["credentials"]
    assert [(x["address"], x["primary"]) for x in creds] == [("Ann@Example.com", True),
                                                              ("alias@example.com", False)]
    msg, _ = api.err("DELETE", "/credentials/ann@example.com", 409)
    assert "primary" in msg
    assert api.ok("DELETE", "/credentials/alias@example.com") == {"deleted": "alias@example.com"}
    api.err("DELETE", "/credentials/alias@example.com", 404)

    # Update: password (another scheme), backend pin, primary.
    j = api.ok("PATCH", "/accounts/ann@example.com", {"password": "new-pw", "hash": "sha512-crypt",
                                                       "backend": "127.0.0.2"})
    assert j["changed"] == ["password", "backend"]
    assert c.admin.sql("SELECT backend FROM accounts WHERE id = %d" % acc).strip() == "127.0.0.2"
    assert c.admin.sql("SELECT password_hash FROM credentials WHERE account_id = %d" % acc
                       ).strip().startswith("{SHA512-CRYPT}")
    assert api.ok("GET", "/accounts/ann@example.com")["backend"] == "127.0.0.2"
    api.ok("PATCH", "/accounts/ann@example.com", {"backend": ""})
    assert api.ok("GET", "/accounts/ann@example.com")["backend"] is None
    msg, _ = api.err("PATCH", "/accounts/ann@example.com", 400, {})
    assert "nothing to change" in msg
    api.err("PATCH", "/accounts/ann@example.com", 400, {"backend": "a b"})

    # Delete is soft; restore undoes it.
    assert api.ok("DELETE", "/accounts/ann@example.com") == {"deleted": "ann@example.com"}
    msg, _ = api.err("DELETE", "/accounts/ann@example.com", 409)
    assert "already deleted" in msg
    assert api.ok("GET", "/accounts")["count"] == 0
    assert api.ok("GET", "/accounts?status=deleted")["accounts"][0]["status"] == "deleted"
    assert api.ok("POST", "/accounts/ann@example.com/restore") == {"restored": "ann@example.com"}
    assert api.ok("GET", "/accounts?status=all")["count"] == 1

    # Errors.
    msg, _ = api.err("GET", "/accounts/nobody@example.com", 404)
    assert "nobody@example.com" in msg
    api.err("PATCH", "/accounts/nobody@example.com", 404, {"backend": "x"})
    api.err("POST", "/accounts/nobody@example.com/restore", 404)
    api.err("GET", "/accounts?status=zombie", 400)
    api.err("POST", "/accounts", 400, raw=b'{"email": "x@example.com", "password": ')
    api.err("POST", "/accounts", 400, raw=b'["x@example.com"]')
    msg, _ = api.err("POST", "/accounts", 400, {"email": "x@example.com"})
    assert msg == '"password" is required'
    msg, _ = api.err("POST", "/accounts", 400, {"email": "x@example.com", "password": "p",
                                                 "pasword": "p"})
    assert msg == 'unknown field "pasword"'
    api.err("POST", "/accounts", 400, {"email": 7, "password": "p"})
    api.err("POST", "/accounts", 400, {"email": "x@example.com", "password": "p", "hash": "md5"})
    msg, _ = api.err("POST", "/accounts", 400, {"email": "not-an-address", "password": "p"})
    assert "invalid address" in msg
    # A NUL in a string would cut it ("x@example.com"): refused.
    msg, _ = api.err("POST", "/accounts", 400,
                     raw=b'{"email": "x@example.com\\u0000y", "password": "p"}')
    assert "NUL" in msg
    # ... but an escaped backslash before "u0000" is just text.
    api.err("POST", "/accounts", 400, raw=b'{"email": "x\\\\u0000@example.com", "password": "p"}')
    api.err("POST", "/accounts", 400, raw=b'{"email": "\xff@example.com", "password": "p"}')
    api.err("POST", "/accounts", 400, raw=b'{"email": "a@b.c",\x00 "password": "p"}')
    # %00 in the path stays literal: not an account named "ann@example.com".
    api.err("GET", "/accounts/ann@example.com%00x", 404)
    assert api.ok("GET", "/accounts/ann%40example.com")["id"] == acc
    # Sizes, paths, methods.
    msg, _ = api.err("POST", "/accounts", 413, raw=b" " * (64 * 1024 + 1))
    assert msg == "request body too large"
    # A chunked body (no Content-Length) past the cap: read, discarded, 413.
    p = subprocess.run([which("curl"), "-sS", "--max-time", "20", "-H", f"Authorization: Bearer {KEY}",
                        "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/json",
                        "--data-binary", "@-", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{api.port}{V1}/accounts"],
                       input=b'{"email": "' + b"a" * 100000 + b'"}', capture_output=True, timeout=30)
    assert p.stdout.decode().rsplit("\n", 1)[1] == "413", p.stdout[-200:]
    api.err("GET", "/nope", 404)
    api.err("GET", "/accounts/a@b.c/credentials/x/y", 404)
    st, h, j = api.call("GET", "/../../etc/passwd")
    assert st == 404
    msg, h = api.err("PUT", "/accounts", 405)
    assert h["allow"] == "GET, POST"
    msg, h = api.err("POST", "/health", 405)
    assert h["allow"] == "GET"
    _, h = api.err("GET", "/credentials/x@example.com", 405)
    assert h["allow"] == "DELETE"
    api.err("GET", "/health", 400, raw=b'{}')
    # Passwords never reach the log.
    log = api.server.log()
    for pw in ("pw-ann", "new-pw", "pw-alias"):
        assert pw not in log
    assert "POST /api/v1/accounts -> 201" in log


def test_cli_and_api_same_result(cluster):
    c = cluster
    api = start_backend(c)
    a = c.admin
    # The same create through both: the same rows but the id and the salt.
    a.ok("accounts", "create", "--email", "cli@example.com", "--password", "pw", "--hash", "ssha512")
    api.ok("POST", "/accounts", {"email": "api@example.com", "password": "pw", "hash": "ssha512"},
           status=201)
    q = ("SELECT a.deleted_at IS NULL, a.backend, c.primary_identity, split_part(c.password_hash, '}', 1)"
         " FROM credentials c JOIN accounts a ON a.id = c.account_id WHERE c.address = '%s'")
    assert a.sql(q % "cli@example.com") == a.sql(q % "api@example.com")
    # Both show up identically in both listings.
    cli_list = a.ok("accounts", "list")
    assert "cli@example.com" in cli_list and "api@example.com" in cli_list
    api_list = {x["primary_address"]: x for x in api.ok("GET", "/accounts")["accounts"]}
    assert set(api_list) == {"cli@example.com", "api@example.com"}
    # Pages: ordered by address, next_offset while a page is full.
    p1 = api.ok("GET", "/accounts?limit=1")
    assert [x["primary_address"] for x in p1["accounts"]] == ["api@example.com"]
    assert p1["next_offset"] == 1
    p2 = api.ok("GET", "/accounts?limit=1&offset=1")
    assert [x["primary_address"] for x in p2["accounts"]] == ["cli@example.com"]
    p3 = api.ok("GET", "/accounts?limit=5&offset=1")
    assert p3["count"] == 1 and "next_offset" not in p3
    api.err("GET", "/accounts?offset=-1", 400)
    # Pin, delete: once through each; the rows match again.
    a.ok("accounts", "update", "--email", "cli@example.com", "--backend", "be9")
    api.ok("PATCH", "/accounts/api@example.com", {"backend": "be9"})
    a.ok("accounts", "delete", "--email", "cli@example.com")
    api.ok("DELETE", "/accounts/api@example.com")
    assert a.sql(q % "cli@example.com") == a.sql(q % "api@example.com")
    assert "(ring)" not in a.ok("accounts", "show", "--email", "api@example.com")
    # The same failure through both: the CLI's stderr line is the API's error.
    r = a.run("accounts", "delete", "--email", "api@example.com")
    msg, _ = api.err("DELETE", "/accounts/cli@example.com", 409)
    assert r.returncode == 1 and msg.replace("cli@", "api@") in r.stderr

    # Unblock: identical tables, one cleaned by the CLI, one by the API.
    rows = ("('198.51.100.7', NULL, 25, now() + interval '10 minutes', 'imap'),"
            " ('198.51.100.8', NULL, 3, NULL, 'pop3'),"
            " (NULL, 'Victim@Example.com', 6, now() + interval '15 minutes', 'pop3')")
    ins = ("INSERT INTO auth_attempts (ip, username, failure_count, blocked_until, last_protocol)"
           " VALUES " + rows)
    snap = "SELECT host(ip), username, failure_count FROM auth_attempts ORDER BY 1, 2"
    a.sql(ins)
    out = a.ok("auth", "unblock", "--ip", "198.51.100.0/24", "--user", "victim@example.com")
    assert "3 rows removed, 2 of them blocking" in out
    after_cli = a.sql(snap)
    a.sql(ins)
    j = api.ok("POST", "/auth/unblock", {"ip": "198.51.100.0/24", "user": "victim@example.com"})
    assert j["count"] == 3 and j["blocking"] == 2
    assert a.sql(snap) == after_cli


def test_auth_blocks_stats_unblock(cluster):
    c = cluster
    api = start_backend(c)
    c.admin.sql(
        "INSERT INTO auth_attempts (ip, username, failure_count, blocked_until, last_protocol,"
        " last_failure_at) VALUES"
        " ('198.51.100.7', NULL, 25, now() + interval '10 minutes', 'imap', now()),"
        " ('198.51.100.8', NULL, 3, NULL, 'pop3', now()),"
        " ('2001:db8::5', NULL, 12, now() + interval '5 minutes', 'imap', now()),"
        " ('198.51.100.9', NULL, 40, NULL, 'imap', now() - interval '3 days'),"
        " (NULL, 'Victim@Example.com', 6, now() + interval '15 minutes', 'pop3', now()),"
        " (NULL, E'evil\\x1b[2J\"\\\\\\x01', 9, now() + interval '15 minutes', NULL, now())")
    j = api.ok("GET", "/auth/blocks")
    assert j["count"] == 4
    by_key = {(b["ip"], b["username"]): b for b in j["blocks"]}
    b = by_key[("198.51.100.7", None)]
    assert b["failures"] == 25 and b["protocol"] == "imap"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", b["blocked_until"])
    # A hostile username comes back exactly, as valid JSON.
    assert (None, 'evil\x1b[2J"\\\x01') in by_key
    assert api.ok("GET", "/auth/blocks?limit=1")["count"] == 1
    api.err("GET", "/auth/blocks?limit=0", 400)

    st = api.ok("GET", "/auth/stats")
    assert st["window"] == "1d" and st["window_seconds"] == 86400
    assert st["failures"] == {"by_ip": 40, "ips": 3, "by_username": 15, "usernames": 2}
    assert st["blocked_now"] == {"total": 4, "ips": 2, "usernames": 2}
    assert [t["key"] for t in st["top_ips"]] == ["198.51.100.7", "2001:db8::5", "198.51.100.8"]
    assert st["top_ips"][2]["blocked_until"] is None
    assert len(st["blocked"]) == 4
    st = api.ok("GET", "/auth/stats?window=7d&top=1")
    assert st["failures"]["by_ip"] == 80 and [t["key"] for t in st["top_ips"]] == ["198.51.100.9"]
    api.err("GET", "/auth/stats?window=soon", 400)
    api.err("GET", "/auth/stats?top=0", 400)
    # The CLI's numbers are the API's.
    out = c.admin.ok("stats", "auth")
    assert "40 failures from 3 IPs" in out and "15 failures for 2 usernames" in out
    assert re.search(r"blocked now:\s+4 \(2 IPs, 2 usernames\)", out)

    j = api.ok("POST", "/auth/unblock", {"ip": "198.51.100.7"})
    assert j == {"removed": [{"ip": "198.51.100.7", "username": None, "failures": 25,
                              "was_blocked": True}], "count": 1, "blocking": 1}
    j = api.ok("POST", "/auth/unblock", {"user": "victim@EXAMPLE.com"})
    assert j["removed"][0]["username"] == "Victim@Example.com"
    assert api.ok("POST", "/auth/unblock", {"ip": "203.0.113.1"})["count"] == 0
    msg, _ = api.err("POST", "/auth/unblock", 400, {})
    api.err("POST", "/auth/unblock", 400, {"ip": "198.51.100.300"})
    api.err("POST", "/auth/unblock", 400, {"ip": 5})
    assert api.ok("GET", "/auth/blocks")["count"] == 2


def test_kick_through_proxy_api(cluster):
    """The proxy serves the API too; its kick closes a live IMAP session."""
    c = cluster
    c.start_backends()
    port = free_port()
    p = c.add_proxy(extra=api_block(port))
    wait_port(port, proc=p.server.proc)
    api = Api(port, p.server)
    assert api.ok("GET", "/health")["status"] == "ok"
    # Accounts are managed through the proxy's API as well.
    api.ok("POST", "/accounts", {"email": "k1@example.com", "password": "pw-k1@example.com",
                                 "hash": "ssha512"}, status=201)
    c.account("k2@example.com")
    m1 = p.login("k1@example.com")
    m1.select("INBOX")
    m2 = p.login("k2@example.com")
    m2.select("INBOX")

    def listed():
        return api.ok("GET", "/connections")["connections"]
    wait_for(lambda: len(listed()) == 2, timeout=10, what="2 listed connections")
    conns = api.ok("GET", "/connections?user=K1@example.com")["connections"]
    assert len(conns) == 1
    row = conns[0]
    assert row["user"] == "k1@example.com" and row["protocol"] == "imap"
    assert row["client"] == f"127.0.0.3:{m1.source_port}" and row["proxy"] == "proxy1"
    assert row["session_id"] and row["since"].endswith("UTC")
    assert api.ok("GET", "/connections?protocol=pop3")["count"] == 0
    # CLI and API list the same sessions.
    cli = c.admin.ok("connections", "list")
    assert all(x["session_id"] in cli for x in listed())

    api.err("POST", "/connections/kick", 400, {})
    api.err("GET", "/connections/kick", 405)
    j = api.ok("POST", "/connections/kick", {"user": "k1@example.com", "protocol": "imap"},
               status=202)
    assert j["matched"] == 1 and j["kick_id"] > 0

    def gone(m):
        try:
            m.noop()
            return False
        except (imaplib.IMAP4.abort, OSError):
            return True
    wait_for(lambda: gone(m1), timeout=5, what="kicked session closed")
    assert m2.noop()[0] == "OK"
    wait_for(lambda: [x["user"] for x in listed()] == ["k2@example.com"], timeout=10,
             what="kicked session unlisted")
    m2.logout()
    # Requests are counted by method and status.
    assert p.metric("sora_http_api_requests_total", method="POST", status="202") == 1
    assert p.metric("sora_http_api_requests_total", method="POST", status="400") == 1
    assert p.metric("sora_http_api_requests_total", method="GET", status="405") == 1


def test_guide_api_security_no_detail_when_database_down(tmp_path, sora_servers):
    """No database: health says so with 503, operations get 503 without the
    database's address or error text; the API itself keeps answering."""
    port, dead = free_port(), free_port()
    cfg = (f'[database]\nhost = "127.0.0.1"\nport = {dead}\ndbname = "nodb"\nuser = "postgres"\n'
           '[logging]\nlevel = "info"\nformat = "console"\noutput = "stderr"\n' + api_block(port))
    s = sora_servers("sora-proxy", cfg, [port])
    api = Api(port, s)
    st, _, j = api.call("GET", "/health")
    assert st == 503 and j["status"] == "unavailable" and j["database"] == {"reachable": False}
    msg, _ = api.err("GET", "/accounts", 503)
    msg2, _ = api.err("POST", "/auth/unblock", 503, {"ip": "198.51.100.7"})
    for m in (msg, msg2):
        assert str(dead) not in m and "nodb" not in m and "refused" not in m.lower()
    api.err("GET", "/health", 401, key="wrong")
    assert "cannot connect" in s.log()
