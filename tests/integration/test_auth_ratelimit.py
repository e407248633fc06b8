"""Authentication rate limiting ([servers.X.auth_rate_limit], security guide
"Authentication Rate Limiting"; docs/security.md): real sora-proxy and
sora-backend processes on one PostgreSQL, real clients.

Client addresses: the proxies trust only 127.0.0.1 and 127.0.0.2 (top-level
trusted_networks), so clients binding 127.0.0.3+ are ordinary clients, and
clients that send a PROXY v1 header to a proxy's PROXY listener (trusted
from 127.0.0.1) can be any address, e.g. 203.0.113.x."""
import base64
import concurrent.futures
import socket
import time

import pytest

from sorafix.common import free_port, wait_for, wait_port
from sorafix.imap import RawImap

TRUSTED_TOP = 'trusted_networks = ["127.0.0.1/32", "127.0.0.2/32"]\n'
FAILED = "NO [AUTHENTICATIONFAILED] Authentication failed."
TEMPFAIL = "NO [UNAVAILABLE] Temporary authentication failure, try again later."


def limiter(server, **kw):
    keys = {"enabled": "true", **kw}
    body = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f"[servers.{server}.auth_rate_limit]\n{body}"


def q(v):
    return f'"{v}"'


# ---------------------------------------------------------------- clients

def imap_socket(port, source=None, proxy_ip=None, timeout=30):
    """A connection to 127.0.0.1:port, from a source address, or announcing
    proxy_ip in a PROXY v1 header."""
    s = socket.socket()
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if proxy_ip:
        s.sendall(f"PROXY TCP4 {proxy_ip} 127.0.0.1 40000 {port}\r\n".encode())
    return s


def imap_login(port, user, password, source=None, proxy_ip=None):
    """(tagged reply without the tag, seconds the LOGIN took)."""
    r = RawImap(imap_socket(port, source, proxy_ip))
    try:
        t0 = time.monotonic()
        reply = r.cmd("a", f'LOGIN "{user}" "{password}"')[-1]
        took = time.monotonic() - t0
        # LOGOUT and wait for the server to close: its connection count
        # per address (max_connections_per_ip) has dropped by then.
        r.send("z LOGOUT\r\n")
        try:
            while True:
                r.line()
        except (EOFError, OSError):
            pass
    finally:
        r.close()
    assert reply.startswith("a "), reply
    return reply[2:], took


def pop3_login(port, user, password, source):
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    try:
        assert f.readline().startswith(b"+OK")
        s.sendall(f"USER {user}\r\n".encode())
        assert f.readline().startswith(b"+OK")
        s.sendall(f"PASS {password}\r\n".encode())
        return f.readline().decode().rstrip("\r\n")
    finally:
        f.close()
        s.close()


def sieve_login(port, user, password, source):
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    try:
        while not f.readline().startswith(b"OK"):
            pass
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        s.sendall(f'AUTHENTICATE "PLAIN" "{blob}"\r\n'.encode())
        return f.readline().decode().rstrip("\r\n")
    finally:
        f.close()
        s.close()


def plain_metric(p, name):
    """The value of a metric without labels."""
    for line in p.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def block_row(c, ip=None, user=None):
    """(failure_count, blocked now) of an auth_attempts row, or None."""
    if ip:
        where = f"ip = '{ip}' AND username IS NULL"
    else:
        where = f"ip IS NULL AND username = '{user}'"
    out = c.admin.sql(f"SELECT failure_count, coalesce(blocked_until > now(), false)"
                      f" FROM auth_attempts WHERE {where}").strip()
    if not out:
        return None
    n, b = out.split("|")
    return int(n), b == "t"


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def rl_cluster(cluster):
    cluster.start_backends()
    return cluster


def start_proxy(c, limits, servers=("imap", "imap_hap"), extra=""):
    text = "".join(limiter(s, **limits) for s in servers) + extra
    return c.add_proxy(top=TRUSTED_TOP, extra=text)


# ---------------------------------------------------------------- tests

def test_guide_auth_rate_limiting_brute_force_one_user(rl_cluster):
    """Wrong passwords from one address against one user: delays grow from
    delay_start_threshold on, the address is blocked at max_attempts_per_ip,
    a blocked attempt gets the wrong-password reply (with the right
    password, after the same delay), a user from another address keeps
    logging in, and the block ends with the window."""
    c = rl_cluster
    c.account("victim@example.com")
    c.account("bystander@example.com")
    p = start_proxy(c, dict(max_attempts_per_ip=6, max_attempts_per_username=100,
                            ip_window_duration=q("5s"), fast_block_threshold=0,
                            delay_start_threshold=2, initial_delay=q("100ms"),
                            max_delay=q("400ms"), delay_multiplier=2))
    attacker = "203.0.113.10"
    # Warm up (database connections of the pool) from another address.
    assert imap_login(p.hap_port, "bystander@example.com", "pw-bystander@example.com",
                      proxy_ip="203.0.113.12")[0].startswith("OK")
    took = []
    for i in range(6):
        reply, t = imap_login(p.hap_port, "victim@example.com", f"guess{i}", proxy_ip=attacker)
        assert reply == FAILED
        took.append(t)
    t_first = time.monotonic() - sum(took)
    # Failures 1 and 2 are not delayed; then 100, 200, 400, 400 ms.
    assert took[0] < 0.1 and took[1] < 0.1, took
    for i, want in ((2, 0.1), (3, 0.2), (4, 0.4), (5, 0.4)):
        assert took[i] >= want, (i, took)
    assert took[5] < 1.0, took
    assert block_row(c, ip=attacker) == (6, True)

    # Blocked: the right password gets the wrong-password reply, delayed.
    reply, t = imap_login(p.hap_port, "victim@example.com", "pw-victim@example.com",
                          proxy_ip=attacker)
    assert reply == FAILED
    assert t >= 0.4, t
    # ... and it was refused without counting (no password was checked).
    assert block_row(c, ip=attacker) == (6, True)
    assert p.metric("sora_auth_attempts_total", protocol="imap", result="blocked") >= 1
    assert p.metric("sora_auth_blocks_total", protocol="imap", kind="ip") == 1
    assert p.metric("sora_auth_blocked_keys", protocol="imap") >= 1
    assert p.metric("sora_auth_delayed_total", protocol="imap") >= 5

    # Another address is not affected, even for the attacked user.
    reply, t = imap_login(p.hap_port, "victim@example.com", "pw-victim@example.com",
                          proxy_ip="203.0.113.11")
    assert reply.startswith("OK"), reply
    reply, t = imap_login(p.port, "bystander@example.com", "pw-bystander@example.com",
                          source="127.0.0.4")
    assert reply.startswith("OK"), reply
    assert t < 0.5

    # The window (5 s from the first failure) ends: the block with it.
    time.sleep(max(0.0, t_first + 5.3 - time.monotonic()))
    reply, t = imap_login(p.hap_port, "victim@example.com", "pw-victim@example.com",
                          proxy_ip=attacker)
    assert reply.startswith("OK"), reply
    assert t < 0.5, t
    assert "authentication rate limiter: address 203.0.113.10 blocked after 6 failures" \
        in p.server.log()


def test_guide_auth_rate_limiting_brute_force_500_users(rl_cluster):
    """One address tries 500 user names. The address is blocked after
    max_attempts_per_ip; the other ~480 attempts are refused from memory
    (no user-name rows, no password checks), each as a wrong password; a
    legitimate user from another address logs in meanwhile."""
    c = rl_cluster
    c.account("real@example.com")
    c.account("user7@example.com")
    p = start_proxy(c, dict(max_attempts_per_ip=20, max_attempts_per_username=3,
                            ip_window_duration=q("1m"), fast_block_threshold=0,
                            delay_start_threshold=5, initial_delay=q("10ms"),
                            max_delay=q("50ms"), delay_multiplier=2))
    attacker = "203.0.113.20"
    names = [f"user{i}@example.com" for i in range(500)]

    def attempt(name):
        return imap_login(p.hap_port, name, "123456", proxy_ip=attacker)

    # The first 20 one after the other (so exactly 20 reach the database),
    # the rest from 8 connections at a time (max_connections_per_ip is 10).
    results = [attempt(n) for n in names[:20]]
    assert block_row(c, ip=attacker) == (20, True)
    legit = []
    q0, t0 = plain_metric(p, "sora_auth_ratelimit_db_queries_total"), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(attempt, n) for n in names[20:]]
        for _ in range(5):
            legit.append(imap_login(p.port, "real@example.com", "pw-real@example.com",
                                    source="127.0.0.5"))
        results += [f.result() for f in futs]
    # 480 refused attempts cost about one re-validation of the blocked
    # address a second, not one query each; the 5 legitimate logins read
    # their keys (and a success clears its name) -- at most 2 each.
    dt = time.monotonic() - t0
    dq = plain_metric(p, "sora_auth_ratelimit_db_queries_total") - q0
    assert dq <= 2 * len(legit) + 2 + 2 * dt, (dq, dt)
    assert all(r == FAILED for r, _ in results), {r for r, _ in results}
    # Delays grew: attempts from the 6th on took at least the initial delay.
    assert all(t >= 0.01 for _, t in results[5:20])
    # Blocked attempts keep the delay (capped at 50 ms) and are refused.
    assert sorted(t for _, t in results[20:])[0] >= 0.05
    # The legitimate user was never delayed or refused.
    assert all(r.startswith("OK") for r, _ in legit), legit
    assert max(t for _, t in legit) < 1.0, legit
    # Only the 20 counted failures reached the table as user names.
    n = int(c.admin.sql("SELECT count(*) FROM auth_attempts WHERE ip IS NULL").strip())
    assert n == 20, n
    # The right password of a real account from the blocked address: refused.
    reply, _ = imap_login(p.hap_port, "user7@example.com", "pw-user7@example.com",
                          proxy_ip=attacker)
    assert reply == FAILED
    assert p.metric("sora_auth_attempts_total", protocol="imap", result="blocked") >= 480


def test_guide_auth_rate_limiting_block_shared_by_a_second_proxy_and_unblock(rl_cluster):
    """A block set through one proxy is enforced by another proxy process
    (same database) within a second, also when that proxy had seen the
    address moments before; sora-admin auth unblock lifts it on both within
    about a second."""
    c = rl_cluster
    c.account("carol@example.com")
    limits = dict(max_attempts_per_ip=3, max_attempts_per_username=100,
                  ip_window_duration=q("1m"), fast_block_threshold=0,
                  progressive_delay_enabled="false")
    p1 = start_proxy(c, limits)
    p2 = start_proxy(c, limits)
    ip = "198.51.100.30"
    # p2 knows the address: one failure, validated now.
    assert imap_login(p2.hap_port, "carol@example.com", "x", proxy_ip=ip)[0] == FAILED
    for i in range(2):
        assert imap_login(p1.hap_port, "carol@example.com", f"y{i}", proxy_ip=ip)[0] == FAILED
    blocked_at = time.monotonic()
    assert block_row(c, ip=ip) == (3, True)
    # p2 refuses the right password within 1 s.
    while True:
        reply, _ = imap_login(p2.hap_port, "carol@example.com", "pw-carol@example.com",
                              proxy_ip=ip)
        if reply == FAILED:
            break
        assert reply.startswith("OK"), reply
        assert time.monotonic() - blocked_at < 1.0, "second proxy still lets the address in"
        time.sleep(0.05)
    assert time.monotonic() - blocked_at < 1.2
    # A flood from the blocked address through p2 costs about one query a
    # second (re-validation), not one per attempt.
    before = plain_metric(p2, "sora_auth_ratelimit_db_queries_total")
    flood_start = time.monotonic()
    for _ in range(40):
        assert imap_login(p2.hap_port, "carol@example.com", "z", proxy_ip=ip)[0] == FAILED
    flood_s = time.monotonic() - flood_start
    after = plain_metric(p2, "sora_auth_ratelimit_db_queries_total")
    assert after - before <= 2 + 2 * flood_s, (after - before, flood_s)

    out = c.admin.ok("auth", "unblock", "--ip", ip)
    assert "was blocked" in out
    unblocked_at = time.monotonic()
    for p in (p1, p2):
        while True:
            reply, _ = imap_login(p.hap_port, "carol@example.com", "pw-carol@example.com",
                                  proxy_ip=ip)
            if reply.startswith("OK"):
                break
            assert reply == FAILED
            assert time.monotonic() - unblocked_at < 1.5, f"{p.name} still blocks"
            time.sleep(0.1)


def test_guide_auth_rate_limiting_fast_block(rl_cluster):
    """fast_block_threshold failures block the address for
    fast_block_duration from that failure (here well before the window
    ends); within the window, each further failure blocks it again."""
    c = rl_cluster
    c.account("kim@example.com")
    p = start_proxy(c, dict(max_attempts_per_ip=100, max_attempts_per_username=100,
                            ip_window_duration=q("1m"), fast_block_threshold=3,
                            fast_block_duration=q("2s"), progressive_delay_enabled="false"))
    ip = "198.51.100.40"
    for i in range(3):
        assert imap_login(p.hap_port, "kim@example.com", f"f{i}", proxy_ip=ip)[0] == FAILED
    blocked_at = time.monotonic()
    assert block_row(c, ip=ip) == (3, True)
    assert imap_login(p.hap_port, "kim@example.com", "pw-kim@example.com",
                      proxy_ip=ip)[0] == FAILED
    time.sleep(max(0.0, blocked_at + 2.3 - time.monotonic()))
    assert block_row(c, ip=ip) == (3, False)
    reply = wait_for(lambda: imap_login(p.hap_port, "kim@example.com", "pw-kim@example.com",
                                        proxy_ip=ip)[0].startswith("OK"),
                     timeout=3, interval=0.2, what="login after the fast block")
    assert reply
    # One more failure in the window: blocked again at once.
    assert imap_login(p.hap_port, "kim@example.com", "f4", proxy_ip=ip)[0] == FAILED
    assert block_row(c, ip=ip) == (4, True)
    assert imap_login(p.hap_port, "kim@example.com", "pw-kim@example.com",
                      proxy_ip=ip)[0] == FAILED


def test_guide_auth_rate_limiting_username_block_and_success_reset(rl_cluster):
    """max_attempts_per_username blocks a name from every address; below it,
    a successful login resets the name's counter (deletes its row)."""
    c = rl_cluster
    c.account("dave@example.com")
    c.account("erin@example.com")
    p = start_proxy(c, dict(max_attempts_per_ip=100, max_attempts_per_username=3,
                            username_window_duration=q("1m"), fast_block_threshold=0,
                            progressive_delay_enabled="false"))
    for i in range(2):
        assert imap_login(p.port, "Dave@Example.com", f"w{i}", source=f"127.0.0.{10 + i}")[0] \
            == FAILED
    assert block_row(c, user="dave@example.com") == (2, False)
    assert imap_login(p.port, "dave@example.com", "pw-dave@example.com",
                      source="127.0.0.12")[0].startswith("OK")
    assert block_row(c, user="dave@example.com") is None
    for i in range(3):
        assert imap_login(p.port, "erin@example.com", f"w{i}", source=f"127.0.0.{20 + i}")[0] \
            == FAILED
    assert block_row(c, user="erin@example.com") == (3, True)
    reply, _ = imap_login(p.port, "erin@example.com", "pw-erin@example.com", source="127.0.0.30")
    assert reply == FAILED
    assert p.metric("sora_auth_blocks_total", protocol="imap", kind="username") == 1


def test_guide_auth_rate_limiting_trusted_networks_are_exempt(rl_cluster):
    """A client in trusted_networks (127.0.0.1 here) is never delayed,
    counted or blocked."""
    c = rl_cluster
    c.account("frank@example.com")
    p = start_proxy(c, dict(max_attempts_per_ip=2, max_attempts_per_username=2,
                            delay_start_threshold=1, initial_delay=q("500ms")))
    for i in range(6):
        reply, t = imap_login(p.port, "frank@example.com", f"v{i}", source="127.0.0.1")
        assert reply == FAILED
        assert t < 0.4, t
    assert imap_login(p.port, "frank@example.com", "pw-frank@example.com",
                      source="127.0.0.1")[0].startswith("OK")
    assert c.admin.sql("SELECT count(*) FROM auth_attempts").strip() == "0"


def test_guide_auth_rate_limiting_pop3_and_managesieve_proxies_are_limited(rl_cluster):
    c = rl_cluster
    c.account("gina@example.com")
    sieve_port = free_port()
    dead = free_port()
    sieve = (f'[servers.sieve]\ntype = "managesieve_proxy"\naddr = "127.0.0.1:{sieve_port}"\n'
             f'remote_addrs = ["127.0.0.1:{dead}"]\nmaster_sasl_username = "proxy"\n'
             'master_sasl_password = "proxy-secret"\nconnect_timeout = "1s"\n'
             'insecure_auth = true\n')
    limits = dict(max_attempts_per_ip=2, max_attempts_per_username=100,
                  fast_block_threshold=0, progressive_delay_enabled="false")
    p = start_proxy(c, limits, servers=("pop3", "sieve"), extra=sieve)
    wait_port(sieve_port, proc=p.server.proc)

    wrong = pop3_login(p.pop3_port, "gina@example.com", "bad", "127.0.0.40")
    assert wrong.startswith("-ERR [AUTH]"), wrong
    assert pop3_login(p.pop3_port, "gina@example.com", "bad2", "127.0.0.40") == wrong
    assert block_row(c, ip="127.0.0.40") == (2, True)
    assert pop3_login(p.pop3_port, "gina@example.com", "pw-gina@example.com",
                      "127.0.0.40") == wrong
    assert pop3_login(p.pop3_port, "gina@example.com", "pw-gina@example.com",
                      "127.0.0.41").startswith("+OK")

    wrong = sieve_login(sieve_port, "gina@example.com", "bad", "127.0.0.50")
    assert wrong.startswith("NO"), wrong
    # Before any block the right password gets past authentication (and
    # then finds no backend: another reply).
    other = sieve_login(sieve_port, "gina@example.com", "pw-gina@example.com", "127.0.0.51")
    assert other != wrong
    assert sieve_login(sieve_port, "gina@example.com", "bad2", "127.0.0.50") == wrong
    assert block_row(c, ip="127.0.0.50") == (2, True)
    assert sieve_login(sieve_port, "gina@example.com", "pw-gina@example.com",
                       "127.0.0.50") == wrong
    assert p.metric("sora_auth_attempts_total", protocol="managesieve", result="blocked") == 1
    assert p.metric("sora_auth_attempts_total", protocol="pop3", result="blocked") == 1


def test_guide_auth_rate_limiting_postgres_down_fails_closed(rl_cluster, pg):
    """PostgreSQL stops: logins through the proxy and directly on a backend
    are refused as temporary failures. PostgreSQL returns: they stay refused
    (without asking the database) until db_error_threshold has passed since
    the error, then work again. Proxied logins reach the backend as master
    SASL from the proxy, which the backend's limiter does not count."""
    c = rl_cluster
    c.account("hank@example.com")
    p = start_proxy(c, dict(db_error_threshold=q("4s")))
    direct = free_port()
    # A third backend process on the same database with a limited,
    # client-facing IMAP listener that trusts nobody but 10.0.0.0/8.
    cfg = (f'hostname = "be-direct"\nevent_loops = 1\nworker_threads = 2\n'
           'trusted_networks = ["10.0.0.0/8"]\n'
           + c.pg.config_block(c.dbname)
           + '[logging]\nlevel = "info"\nformat = "console"\noutput = "stderr"\n'
           f'[storage]\nbackend = "fs"\nfs_path = "{c.blobs}"\n'
           f'[uploader]\npath = "{c.dir}/staging-direct"\n'
           f'[servers.imap]\naddr = "127.0.0.1:{direct}"\ninsecure_auth = true\n'
           + limiter("imap", db_error_threshold=q("4s")))
    be = c.sora_servers("sora-backend", cfg, [direct], name="be-direct")

    assert imap_login(p.port, "hank@example.com", "pw-hank@example.com",
                      source="127.0.0.60")[0].startswith("OK")
    assert imap_login(direct, "hank@example.com", "pw-hank@example.com",
                      source="127.0.0.1")[0].startswith("OK")
    pg.stop()
    try:
        t_err = time.monotonic()
        assert imap_login(p.port, "hank@example.com", "pw-hank@example.com",
                          source="127.0.0.60")[0] == TEMPFAIL
        assert imap_login(direct, "hank@example.com", "pw-hank@example.com",
                          source="127.0.0.1")[0] == TEMPFAIL
        # Refused at once now, without the database (a wrong password too).
        reply, t = imap_login(p.port, "hank@example.com", "nope", source="127.0.0.61")
        assert reply == TEMPFAIL and t < 0.5
    finally:
        pg.start()
    # The database is back, but the threshold has not passed.
    assert time.monotonic() - t_err < 3.5
    assert imap_login(p.port, "hank@example.com", "pw-hank@example.com",
                      source="127.0.0.60")[0] == TEMPFAIL
    assert imap_login(direct, "hank@example.com", "pw-hank@example.com",
                      source="127.0.0.1")[0] == TEMPFAIL
    assert "refusing logins for 4000 ms" in p.server.log()
    assert "refusing logins for 4000 ms" in be.log()
    assert "rate limiter's database is unavailable (fail-closed)" in p.server.log()
    time.sleep(max(0.0, t_err + 4.5 - time.monotonic()))
    wait_for(lambda: imap_login(p.port, "hank@example.com", "pw-hank@example.com",
                                source="127.0.0.60")[0].startswith("OK"),
             timeout=10, interval=0.5, what="proxy login after the outage")
    wait_for(lambda: imap_login(direct, "hank@example.com", "pw-hank@example.com",
                                source="127.0.0.1")[0].startswith("OK"),
             timeout=10, interval=0.5, what="backend login after the outage")
    assert plain_metric(p, "sora_auth_ratelimit_db_errors_total") >= 1
    assert p.metric("sora_auth_attempts_total", protocol="imap", result="tempfail") >= 3


def test_guide_authentication_master_login_logged_at_notice(rl_cluster):
    """Every master login is logged at notice with the real client address
    (here: a proxied login, master SASL on the backend)."""
    c = rl_cluster
    c.account("ivy@example.com")
    p = start_proxy(c, dict())
    assert imap_login(p.hap_port, "ivy@example.com", "pw-ivy@example.com",
                      proxy_ip="192.0.2.77")[0].startswith("OK")
    be = c.backend_of("ivy@example.com")
    assert be is not None
    wait_for(lambda: "master login as ivy@example.com" in be.server.log(), timeout=5)
    line = next(l for l in be.server.log().splitlines() if "master login as ivy@" in l)
    assert " NOTICE " in line, line
    assert "from 192.0.2.77:" in line and "via 127.0.0.1" in line, line
    assert "pw-ivy" not in be.server.log() and "proxy-secret" not in be.server.log()
