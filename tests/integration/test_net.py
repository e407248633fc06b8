"""Foundation: listeners, TLS, STARTTLS, PROXY protocol (with real HAProxy),
timeouts, connection limits, SIGHUP certificate reload, metrics, shutdown.

Every test starts its own sora-backend/sora-proxy with a generated config on
kernel-chosen ports."""
import imaplib
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from sorafix.common import free_port, wait_for, wait_port, which


def server_block(name, port, extra="", typ=None):
    s = f'[servers.{name}]\n'
    if typ:
        s += f'type = "{typ}"\n'
    s += f'addr = "127.0.0.1:{port}"\n' + extra + "\n"
    return s


def base_config(tmp_path, db="", level="debug"):
    return (f'hostname = "mail.test"\nevent_loops = 2\nworker_threads = 2\n' + db +
            f'[logging]\nlevel = "{level}"\nformat = "console"\noutput = "stderr"\n'
            f'[storage]\nbackend = "fs"\nfs_path = "{tmp_path}/blobs"\n')


def recv_line(sock, timeout=5.0):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_all(sock, timeout=5.0):
    """Everything until the server closes (or timeout)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def metrics_text(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_value(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------- basics


def test_imap_and_pop3_minimal_commands_backend(tmp_path, sora_servers, shared_db):
    ip, pp = free_port(), free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", ip) + server_block("pop3", pp)
    sora_servers("sora-backend", cfg, [ip, pp])

    m = imaplib.IMAP4("127.0.0.1", ip)
    assert m.welcome.startswith(b"* OK [CAPABILITY IMAP4rev1")
    typ, caps = m.capability()
    assert typ == "OK" and b"IMAP4rev1" in caps[0]
    assert b"STARTTLS" not in caps[0]  # not configured: not advertised
    assert m.noop()[0] == "OK"
    # imaplib raises on a tagged BAD; the session goes on afterwards.
    with pytest.raises(imaplib.IMAP4.error, match="Unknown command"):
        m.xatom("FOO")
    assert m.noop()[0] == "OK"
    assert m.logout()[0] == "BYE"

    p = poplib.POP3("127.0.0.1", pp)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "RESP-CODES" in caps and "STLS" not in caps
    assert p.quit().startswith(b"+OK")


def test_imap_bad_commands_end_session(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port, "max_errors = 3")
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    s.sendall(b"a1 FROBNICATE\r\n")
    assert recv_line(s) == b"a1 BAD Unknown command or not valid before login.\r\n"
    s.sendall(b"\r\n")
    assert recv_line(s).startswith(b"* BAD")
    s.sendall(b"a3 NOOP extra\r\nbad{tag NOOP\r\n")
    assert recv_line(s) == b"a3 OK NOOP completed.\r\n"
    rest = recv_all(s)
    assert b"BAD" in rest and b"* BYE Too many invalid commands." in rest


def test_imap_line_too_long_is_refused(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port)
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    s.sendall(b"a1 NOOP" + (b" " + b"x" * 7000) * 10)  # no CRLF: past the 64 KiB line cap
    rest = recv_all(s)
    assert b"* BYE" in rest and b"too long" in rest, rest


def test_pipelined_commands_in_one_packet(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port)
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    s.sendall(b"a1 NOOP\r\na2 NOOP\r\na3 LOGOUT\r\n")
    out = recv_all(s)
    assert out == (b"a1 OK NOOP completed.\r\na2 OK NOOP completed.\r\n"
                   b"* BYE Logging out.\r\na3 OK LOGOUT completed.\r\n")


def test_byte_at_a_time_commands(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port)
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    recv_line(s)
    for b in b"x1 NOOP\r\n":
        s.send(bytes([b]))
        time.sleep(0.002)
    assert recv_line(s) == b"x1 OK NOOP completed.\r\n"


def test_unix_socket_listener(tmp_path, sora_servers, shared_db):
    path = str(tmp_path / "imap.sock")
    cfg = base_config(tmp_path, shared_db) + f'[servers.imap]\naddr = "unix:{path}"\n'
    srv = sora_servers("sora-backend", cfg, [])
    wait_for(lambda: os.path.exists(path), what="unix socket")
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    assert recv_line(s).startswith(b"* OK")
    s.sendall(b"a LOGOUT\r\n")
    assert b"a OK LOGOUT" in recv_all(s)
    srv.stop()
    assert not os.path.exists(path)


def test_proxy_binary_serves_proxy_types_only(tmp_path, sora_servers, shared_db):
    ip, bp = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block("imap_proxy", ip, f'remote_addrs = ["127.0.0.1:{bp}"]')
           + server_block("imap", bp))
    srv = sora_servers("sora-proxy", cfg, [ip])
    m = imaplib.IMAP4("127.0.0.1", ip)
    assert m.logout()[0] == "BYE"
    srv.wait_log("[servers.imap] (imap) is for sora-backend: ignored here")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", bp), timeout=1)


def test_port_in_use_is_an_error(tmp_path, sora_servers, shared_db):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(base_config(tmp_path, shared_db) + server_block("imap", port))
    from sorafix.common import bin_path
    r = subprocess.run([bin_path("sora-backend"),
                        "--config", str(cfg_path)], capture_output=True, text=True, timeout=20,
                       cwd=str(tmp_path))
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
    blocker.close()


def test_check_config_and_bad_config(tmp_path, shared_db):
    from sorafix.common import bin_path
    good = tmp_path / "good.toml"
    good.write_text(base_config(tmp_path, shared_db) + server_block("imap", free_port()))
    r = subprocess.run([bin_path("sora-backend"), "--config", str(good), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(base_config(tmp_path, shared_db) + '[servers.imap]\naddr = ":143"\ncommand_timeout = "5 parsecs"\n')
    r = subprocess.run([bin_path("sora-backend"), "--config", str(bad), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "bad.toml:" in r.stderr and "command_timeout" in r.stderr
    r = subprocess.run([bin_path("sora-backend")], capture_output=True, text=True)
    assert r.returncode == 2 and "--config" in r.stderr
    r = subprocess.run([bin_path("sora-backend"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("sora-backend ")


# ---------------------------------------------------------------- TLS


def tls_block(certs, extra=""):
    return (f'tls = true\ntls_cert_file = "{certs.server_chain}"\n'
            f'tls_key_file = "{certs.server_key}"\n' + extra)


def starttls_block(certs):
    return (f'tls_use_starttls = true\ntls_cert_file = "{certs.server_chain}"\n'
            f'tls_key_file = "{certs.server_key}"\n')


def client_ctx(certs, **kw):
    ctx = ssl.create_default_context(cafile=certs.ca_crt)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def test_implicit_tls_python_and_openssl(tmp_path, sora_servers, certs, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imaps", port, tls_block(certs), typ="imap")
    sora_servers("sora-backend", cfg, [port])

    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(certs))
    assert m.welcome.startswith(b"* OK")
    # Full chain sent: verification against the CA alone succeeded.
    assert m.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert m.noop()[0] == "OK"
    m.logout()

    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", certs.ca_crt,
                        "-verify_return_error", "-servername", "mail.test", "-quiet"],
                       input=b"a LOGOUT\r\n", capture_output=True, timeout=20)
    assert b"* OK" in r.stdout and b"a OK LOGOUT completed." in r.stdout, r.stderr
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts"],
                       input=b"", capture_output=True, timeout=20)
    # Leaf and CA: the chain file was served whole.
    assert r.stdout.count(b"-----BEGIN CERTIFICATE-----") == 2


def test_guide_tls_old_protocol_versions_refused(tmp_path, sora_servers, certs, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imaps", port, tls_block(certs), typ="imap")
    srv = sora_servers("sora-backend", cfg, [port])
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
                        "-cipher", "DEFAULT@SECLEVEL=0"], input=b"", capture_output=True, timeout=20)
    assert b"* OK" not in r.stdout
    srv.wait_log("TLS handshake failed")
    assert re.search(r"unsupported protocol|version too low|no protocols available",
                     srv.log()), srv.log()[-2000:]
    # TLS 1.2 still works.
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-quiet"],
                       input=b"a LOGOUT\r\n", capture_output=True, timeout=20)
    assert b"a OK LOGOUT completed." in r.stdout


def test_starttls_imap_and_pop3(tmp_path, sora_servers, certs, shared_db):
    ip, pp = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block("imap", ip, starttls_block(certs))
           + server_block("pop3", pp, starttls_block(certs)))
    sora_servers("sora-backend", cfg, [ip, pp])

    m = imaplib.IMAP4("127.0.0.1", ip)
    assert "STARTTLS" in m.capabilities
    m.starttls(ssl_context=client_ctx(certs))
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0]  # not offered twice
    assert m.noop()[0] == "OK"
    m.logout()

    p = poplib.POP3("127.0.0.1", pp)
    assert "STLS" in p.capa()
    p.stls(context=client_ctx(certs))
    assert "STLS" not in p.capa()
    p.quit()

    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{ip}", "-starttls", "imap",
                        "-CAfile", certs.ca_crt, "-verify_return_error", "-quiet"],
                       input=b"a NOOP\r\na LOGOUT\r\n", capture_output=True, timeout=20)
    assert b"a OK LOGOUT completed." in r.stdout, r.stderr


def test_guide_tls_starttls_injection_discarded(tmp_path, sora_servers, certs, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port, starttls_block(certs))
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    # A command smuggled in the same packet as STARTTLS must not run.
    s.sendall(b"a STARTTLS\r\nb LOGOUT\r\n")
    assert recv_line(s) == b"a OK Begin TLS negotiation now.\r\n"
    t = client_ctx(certs).wrap_socket(s, server_hostname="mail.test")
    t.sendall(b"c NOOP\r\n")
    assert recv_line(t) == b"c OK NOOP completed.\r\n"


def test_client_certificate_required(tmp_path, sora_servers, certs, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imaps", port, tls_block(certs, f'tls_verify = true\ntls_ca_file = "{certs.ca_crt}"\n'), typ="imap")
    sora_servers("sora-backend", cfg, [port])

    ctx = client_ctx(certs)
    with pytest.raises((ssl.SSLError, ConnectionResetError, imaplib.IMAP4.abort, OSError)):
        m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
        m.noop()

    ctx = client_ctx(certs)
    ctx.load_cert_chain(certs.client_crt, certs.client_key)
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    assert m.noop()[0] == "OK"
    m.logout()


def test_guide_incident_response_certificate_swapped_by_sighup(tmp_path, sora_servers, certs, shared_db):
    port = free_port()
    crt, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(certs.server_chain, crt)
    shutil.copy(certs.server_key, key)
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imaps", port, f'tls = true\ntls_cert_file = "{crt}"\ntls_key_file = "{key}"\n', typ="imap")
    srv = sora_servers("sora-backend", cfg, [port])

    def peer_cn():
        ctx = ssl.create_default_context(cafile=certs.ca_crt)
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw) as t:
                cert = t.getpeercert()
                recv_line(t)
                return dict(x[0] for x in cert["subject"])["commonName"]

    before = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(certs))
    assert peer_cn() == "mail.test"
    shutil.copy(certs.server2_crt, crt)
    shutil.copy(certs.server2_key, key)
    srv.signal(signal.SIGHUP)
    srv.wait_log("SIGHUP: certificates reloaded")
    assert peer_cn() == "mail2.test"
    # The connection made before the reload is still alive.
    assert before.noop()[0] == "OK"
    before.logout()
    # A broken certificate on reload keeps the working one.
    crt.write_text("garbage")
    srv.signal(signal.SIGHUP)
    srv.wait_log("keeping the old certificate")
    assert peer_cn() == "mail2.test"


# ---------------------------------------------------------------- PROXY protocol


def haproxy_cfg(tmp_path, front_port, back_port, send):
    p = tmp_path / f"haproxy-{send}.cfg"
    p.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:{front_port}
    default_backend b
backend b
    server s1 127.0.0.1:{back_port} {send}
""")
    return str(p)


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_haproxy_passes_client_address(tmp_path, sora_servers, send, shared_db):
    back, front = free_port(), free_port()
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imap", back, '[servers.imap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.1/32"]\n')
    srv = sora_servers("sora-backend", cfg, [back])
    hp = subprocess.Popen([which("haproxy"), "-db", "-f", haproxy_cfg(tmp_path, front, back, send)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(front, proc=hp)
        # The client connects from 127.0.0.2; HAProxy talks to us from
        # 127.0.0.1. The session must see 127.0.0.2 and the client's port.
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        cport = s.getsockname()[1]
        s.connect(("127.0.0.1", front))
        assert recv_line(s).startswith(b"* OK")
        s.sendall(b"a LOGOUT\r\n")
        recv_all(s)
        srv.wait_log(f"peer=127.0.0.2:{cport}")
        assert f"PROXY v{'2' if send.endswith('v2') else '1'} header" in srv.log()
    finally:
        hp.terminate()
        hp.wait(10)


def test_guide_proxy_protocol_untrusted_sender_rejected(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imap", port, '[servers.imap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.2/32"]\n')
    srv = sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 143\r\n")
    assert recv_all(s) == b""
    srv.wait_log("not in proxy_protocol.trusted_proxies")
    assert "198.51.100.7" not in srv.log()


def test_proxy_header_malformed_or_missing(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imap", port, '[servers.imap.proxy_protocol]\nenabled = true\ntrusted_proxies = ["127.0.0.0/8"]\n'
                      'timeout = "1s"\n')
    srv = sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 143\r\n")
    assert recv_all(s) == b""
    srv.wait_log("invalid PROXY protocol header")
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.time()
    assert recv_all(s, timeout=5) == b""
    assert 0.8 < time.time() - t0 < 4
    srv.wait_log("no PROXY protocol header within 1000 ms")
    # A valid v1 header from a trusted peer followed by a command in the same packet.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 143\r\na NOOP\r\n")
    assert recv_line(s).startswith(b"* OK")
    assert recv_line(s) == b"a OK NOOP completed.\r\n"
    srv.wait_log("peer=203.0.113.9:5555")


# ---------------------------------------------------------------- timeouts


def test_idle_timeout(tmp_path, sora_servers, shared_db):
    port, mport = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block("imap", port, 'command_timeout = "2s"')
           + server_block("metrics", mport))
    sora_servers("sora-backend", cfg, [port, mport])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    t0 = time.time()
    out = recv_all(s, timeout=10)
    assert out == b"* BYE Disconnected for inactivity.\r\n"
    assert 1.5 < time.time() - t0 < 5
    assert metric_value(metrics_text(mport), "sora_command_timeouts_total", protocol="imap", reason="idle") == 1


def test_absolute_session_timeout(tmp_path, sora_servers, shared_db):
    port, mport = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block("pop3", port, 'absolute_session_timeout = "3s"')
           + server_block("metrics", mport))
    sora_servers("sora-backend", cfg, [port, mport])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    t0 = time.time()
    # Active the whole time: only the absolute limit can end it.
    while time.time() - t0 < 10:
        try:
            s.sendall(b"CAPA\r\n")
        except OSError:
            break
        data = recv_all(s, timeout=0.4)
        if b"Maximum session time exceeded" in data:
            break
    assert 2.5 < time.time() - t0 < 6
    assert metric_value(metrics_text(mport), "sora_command_timeouts_total", protocol="pop3",
                        reason="session_max") == 1


def test_timeouts_disabled_with_minus_one(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block(
        "imap", port, 'command_timeout = -1\nabsolute_session_timeout = -1\nmin_bytes_per_minute = -1')
    sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    time.sleep(3)
    s.sendall(b"a NOOP\r\n")
    assert recv_line(s) == b"a OK NOOP completed.\r\n"


def test_guide_command_timeouts_slowloris_cut(tmp_path, sora_servers, shared_db):
    """One byte every 2 s never completes a command: the throughput floor
    (1024 bytes over the one-minute window) cuts it, although the idle
    timeout (10 s) never fires."""
    port, mport = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block(
        "imap", port, 'command_timeout = "10s"\nmin_bytes_per_minute = 1024')
        + server_block("metrics", mport))
    sora_servers("sora-backend", cfg, [port, mport])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    s.settimeout(0.1)
    t0 = time.time()
    got = b""
    while time.time() - t0 < 75:
        try:
            s.send(b"a")
        except OSError:
            break
        try:
            data = s.recv(100)
            if not data:
                break
            got += data
        except socket.timeout:
            pass
        time.sleep(2)
    elapsed = time.time() - t0
    assert b"* BYE Connection too slow." in got
    assert 58 < elapsed < 70
    assert metric_value(metrics_text(mport), "sora_command_timeouts_total", protocol="imap",
                        reason="slow_throughput") == 1


# ---------------------------------------------------------------- limits


def test_guide_connection_limits(tmp_path, sora_servers, shared_db):
    ip, pp = free_port(), free_port()
    # Loopback is trusted by default (and trusted peers are exempt from the
    # per-IP cap), so make it untrusted here.
    cfg = ('trusted_networks = ["192.0.2.0/24"]\n' + base_config(tmp_path, shared_db)
           + server_block("imap", ip, "max_connections = 10\nmax_connections_per_ip = 2")
           + server_block("pop3", pp, "max_connections = 2\nmax_connections_per_ip = 0"))
    sora_servers("sora-backend", cfg, [ip, pp])

    # From 127.0.0.5, so the readiness probe (from 127.0.0.1) cannot count.
    def conn_from(addr, port):
        s = socket.socket()
        s.bind((addr, 0))
        s.connect(("127.0.0.1", port))
        return s

    keep = [conn_from("127.0.0.5", ip) for _ in range(2)]
    for k in keep:
        assert recv_line(k).startswith(b"* OK")
    extra = conn_from("127.0.0.5", ip)
    assert recv_all(extra) == b"* BYE [UNAVAILABLE] Too many connections from your address, try again later.\r\n"
    # Another address is not affected by this one's count.
    other = socket.socket()
    other.bind(("127.0.0.3", 0))
    other.connect(("127.0.0.1", ip))
    assert recv_line(other).startswith(b"* OK")
    # Closing one frees a slot.
    keep[0].close()
    time.sleep(0.3)
    again = conn_from("127.0.0.5", ip)
    assert recv_line(again).startswith(b"* OK")

    # The total cap: wait for the probe's close to be seen first.
    time.sleep(0.3)
    pk = [socket.create_connection(("127.0.0.1", pp)) for _ in range(2)]
    for k in pk:
        assert recv_line(k).startswith(b"+OK")
    extra = socket.create_connection(("127.0.0.1", pp))
    assert recv_all(extra) == b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n"


# ---------------------------------------------------------------- metrics, shutdown


def test_metrics_endpoint_counts_connections(tmp_path, sora_servers, shared_db):
    ip, mport = free_port(), free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", ip) + server_block("metrics", mport)
    sora_servers("sora-backend", cfg, [ip, mport])
    # The readiness probe was a connection too: count from here.
    wait_for(lambda: metric_value(metrics_text(mport), "sora_connections_current", protocol="imap") == 0,
             what="probe connection closed")
    base = metric_value(metrics_text(mport), "sora_connections_total", protocol="imap")
    conns = []
    for _ in range(3):
        m = imaplib.IMAP4("127.0.0.1", ip)
        conns.append(m)
    text = metrics_text(mport)
    assert metric_value(text, "sora_connections_total", protocol="imap") == base + 3
    assert metric_value(text, "sora_connections_current", protocol="imap") == 3
    assert "# TYPE sora_command_timeouts_total counter" in text
    for m in conns:
        m.logout()
    wait_for(lambda: metric_value(metrics_text(mport), "sora_connections_current", protocol="imap") == 0,
             what="sora_connections_current back to 0")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=5)
    assert e.value.code == 404


def test_metrics_allowed_hosts(tmp_path, sora_servers, shared_db):
    """allowed_hosts admits 127.0.0.1 and nothing else: a scrape from there
    gets the real page, one from 127.0.0.2 (also loopback, not in the list)
    is accepted by the kernel and then closed by the server without a byte
    (docs/security.md), which is not the same as nothing listening."""
    ip, mport = free_port(), free_port()
    cfg = (base_config(tmp_path, shared_db) + server_block("imap", ip)
           + server_block("metrics", mport, 'allowed_hosts = ["127.0.0.1/32"]'))
    srv = sora_servers("sora-backend", cfg, [ip, mport])

    text = metrics_text(mport)
    assert metric_value(text, "sora_connections_total", protocol="imap") is not None
    start = metric_value(text, "process_start_time_seconds")
    assert start is not None and time.time() - 120 < start <= time.time() + 1

    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    # Raises ConnectionRefusedError when there is no metrics server at all.
    s.connect(("127.0.0.1", mport))
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    s.settimeout(5)  # a server that never closes fails here
    try:
        reply = s.recv(4096)
    except ConnectionResetError:
        reply = b""
    assert reply == b""
    s.close()
    srv.wait_log("refused connection from 127.0.0.2, not in allowed_hosts")
    # The refusal is per client: the allowed one still gets its page.
    assert "sora_connections_total" in metrics_text(mport)


def test_sigterm_says_goodbye_and_exits(tmp_path, sora_servers, shared_db):
    port = free_port()
    cfg = base_config(tmp_path, shared_db) + server_block("imap", port)
    srv = sora_servers("sora-backend", cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    recv_line(s)
    t0 = time.time()
    srv.signal(signal.SIGTERM)
    assert recv_all(s) == b"* BYE [UNAVAILABLE] Server shutting down.\r\n"
    assert srv.proc.wait(10) == 0
    assert time.time() - t0 < 5
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
