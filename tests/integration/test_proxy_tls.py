"""TLS on both sides of sora-proxy: implicit TLS and STARTTLS for clients
(IMAP, ManageSieve with its capabilities re-issued after the handshake),
and TLS to the backends with certificate verification on by default."""
import imaplib
import socket
import ssl

import pytest

from sorafix.common import free_port
from sorafix.proxy import MASTER_SASL


def backend_tls_block(b, certs, port):
    user, pw = MASTER_SASL
    return (f'[servers.imaps]\ntype = "imap"\naddr = "{b.host}:{port}"\ntls = true\n'
            f'tls_cert_file = "{certs.server_chain}"\ntls_key_file = "{certs.server_key}"\n'
            f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n')


def proxy_block(name, port, remotes, certs, extra=""):
    user, pw = MASTER_SASL
    return (f'[servers.{name}]\ntype = "imap_proxy"\naddr = "127.0.0.1:{port}"\n'
            f'remote_addrs = [{", ".join(chr(34) + r + chr(34) for r in remotes)}]\n'
            f'remote_use_proxy_protocol = false\nremote_tls = true\n'
            f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
            f'connect_timeout = "3s"\ninsecure_auth = true\n{extra}')


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_tls_to_backend_verified(cluster, certs):
    c = cluster
    be1, be2 = c.backends
    p1, p2 = free_port(), free_port()
    be1.start(extra=backend_tls_block(be1, certs, p1))
    be2.start(extra=backend_tls_block(be2, certs, p2))
    good, bad, noca = free_port(), free_port(), free_port()
    extra = (proxy_block("imap_tls", good, [f"{be1.host}:{p1}"], certs,
                         f'remote_tls_ca_file = "{certs.ca_crt}"\n')
             # The certificate names 127.0.0.1, not 127.0.0.2.
             + proxy_block("imap_tls_badname", bad, [f"{be2.host}:{p2}"], certs,
                           f'remote_tls_ca_file = "{certs.ca_crt}"\n')
             # Verification on by default: the system store does not know our CA.
             + proxy_block("imap_tls_noca", noca, [f"{be1.host}:{p1}"], certs))
    p = c.add_proxy(extra=extra)
    c.account("t@example.com")
    m = imaplib.IMAP4("127.0.0.1", good, timeout=15)
    m.login("t@example.com", "pw-t@example.com")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    for port in (bad, noca):
        m = imaplib.IMAP4("127.0.0.1", port, timeout=15)
        with pytest.raises(imaplib.IMAP4.error) as e:
            m.login("t@example.com", "pw-t@example.com")
        assert "UNAVAILABLE" in str(e.value)
    log = p.server.log()
    assert "TLS certificate verification failed: IP address mismatch" in log, log[-2000:]
    assert "TLS certificate verification failed: self-signed certificate" in log, log[-2000:]
    # The health checks verify the same way: both are down, the good one up.
    assert f"backend {be2.host}:{p2} is down" in log and f"backend {be1.host}:{p1} is down" in log
    assert p.metric("sora_proxy_backend_up", server="imap_tls_noca", protocol="imap",
                    backend=f"{be1.host}:{p1}") == 0
    assert p.metric("sora_proxy_backend_up", server="imap_tls", protocol="imap",
                    backend=f"{be1.host}:{p1}") == 1


def test_client_implicit_tls_and_starttls(cluster, certs):
    c = cluster
    c.start_backends()
    tls_port, st_port = free_port(), free_port()
    user, pw = MASTER_SASL
    remotes = ", ".join(f'"{b.host}:{b.imap_port}"' for b in c.backends)
    common = (f'remote_addrs = [{remotes}]\nmaster_sasl_username = "{user}"\n'
              f'master_sasl_password = "{pw}"\n'
              f'tls_cert_file = "{certs.server_chain}"\ntls_key_file = "{certs.server_key}"\n')
    extra = (f'[servers.imaps]\ntype = "imap_proxy"\naddr = "127.0.0.1:{tls_port}"\ntls = true\n{common}'
             f'[servers.imap_st]\ntype = "imap_proxy"\naddr = "127.0.0.1:{st_port}"\n'
             f'tls_use_starttls = true\n{common}')
    c.add_proxy(extra=extra, top='trusted_networks = ["127.0.0.2/32"]\n')
    c.account("t@example.com")
    m = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=client_ctx(), timeout=15)
    m.login("t@example.com", "pw-t@example.com")
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", st_port, timeout=15)
    assert "LOGINDISABLED" in m.capabilities
    m.starttls(ssl_context=client_ctx())
    m.login("t@example.com", "pw-t@example.com")
    m.logout()


def test_managesieve_starttls_reissues_capabilities(cluster, certs):
    c = cluster
    c.start_backends()
    dovecots = c.start_dovecots()
    port = free_port()
    user, pw = MASTER_SASL
    remotes = ", ".join(f'"{d.host}:{d.port}"' for d in dovecots)
    extra = (f'[servers.sieve_st]\ntype = "managesieve_proxy"\naddr = "127.0.0.1:{port}"\n'
             f'tls_use_starttls = true\nremote_addrs = [{remotes}]\n'
             f'master_sasl_username = "{user}"\nmaster_sasl_password = "{pw}"\n'
             f'tls_cert_file = "{certs.server_chain}"\ntls_key_file = "{certs.server_key}"\n')
    c.add_proxy(extra=extra, top='trusted_networks = ["127.0.0.2/32"]\n')
    c.account("t@example.com")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def caps(fh):
        out = []
        while True:
            l = fh.readline().decode()
            assert l, out
            out.append(l)
            if l.startswith("OK"):
                return "".join(out)
    before = caps(f)
    assert '"STARTTLS"' in before and '"SASL" ""' in before, before
    s.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"OK")
    t = client_ctx().wrap_socket(s)
    tf = t.makefile("rb")
    after = caps(tf)
    assert '"STARTTLS"' not in after and '"SASL" "PLAIN"' in after, after
    import base64
    t.sendall(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b"\0t@example.com\0pw-t@example.com")
              + b'"\r\n')
    assert tf.readline().startswith(b"OK"), "logged in through the proxy"
    t.sendall(b"LISTSCRIPTS\r\n")
    assert tf.readline().startswith(b"OK")
