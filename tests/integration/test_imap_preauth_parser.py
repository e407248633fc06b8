"""The pre-auth IMAP front end parses commands with the IMAP command parser
(common/proto/imap-parser.c), so literal bytes are never taken for a
command. Every test runs against sora-backend (type imap) and sora-proxy
(type imap_proxy, whose backend is never contacted before login)."""
import socket
import time

import pytest

from sorafix.common import free_port
from test_net import base_config, recv_all, recv_line, server_block

KINDS = ["sora-backend", "sora-proxy"]


def start(kind, tmp_path, sora_servers, shared_db, extra=""):
    port = free_port()
    if kind == "sora-proxy":
        cfg = base_config(tmp_path) + server_block(
            "imap", port, 'remote_addrs = ["127.0.0.1:9"]\n' + extra, typ="imap_proxy")
    else:
        cfg = base_config(tmp_path, shared_db) + server_block("imap", port, extra)
    sora_servers(kind, cfg, [port])
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    greeting = recv_line(s)
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    return s


@pytest.mark.parametrize("kind", KINDS)
def test_literal_plus_hides_no_command(kind, tmp_path, sora_servers, shared_db):
    # Issue 9: "a1 ID {10+}\r\nb1 LOGOUT\r\n" logged out. The ten bytes
    # "b1 LOGOUT\r" are a value in ID's list; ")" and the LF end ID.
    s = start(kind, tmp_path, sora_servers, shared_db)
    s.sendall(b'a1 ID ("k" {10+}\r\nb1 LOGOUT\r)\r\n')
    assert recv_line(s).startswith(b'* ID ("name" "Sora"')
    assert recv_line(s) == b"a1 OK ID completed.\r\n"
    # The bare form from the issue: a literal is no ID list (RFC 2971),
    # so it is a BAD -- and still not a LOGOUT.
    s.sendall(b"a0 ID {10+}\r\nb1 LOGOUT\r\n")
    assert recv_line(s).startswith(b"a0 BAD ")
    # The session goes on: no BYE, the next command is answered.
    s.sendall(b"a2 NOOP\r\n")
    assert recv_line(s) == b"a2 OK NOOP completed.\r\n"
    s.sendall(b"a3 LOGOUT\r\n")
    assert recv_all(s) == b"* BYE Logging out.\r\na3 OK LOGOUT completed.\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_sync_literal_gets_continuation(kind, tmp_path, sora_servers, shared_db):
    s = start(kind, tmp_path, sora_servers, shared_db)
    s.sendall(b"a1 LOGIN {4}\r\n")
    assert recv_line(s) == b"+ OK\r\n"
    s.sendall(b"user {8}\r\n")
    assert recv_line(s) == b"+ OK\r\n"
    # The password bytes look like a command: they are data.
    s.sendall(b"b LOGOUT\r\n")
    # No login here: the backend has no insecure_auth and no TLS
    # (PRIVACYREQUIRED), the proxy does not log in yet (UNAVAILABLE).
    assert recv_line(s).startswith(b"a1 NO [")
    s.sendall(b"a2 NOOP\r\n")
    assert recv_line(s) == b"a2 OK NOOP completed.\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_over_limit_literal_refused_before_its_bytes(kind, tmp_path, sora_servers, shared_db):
    s = start(kind, tmp_path, sora_servers, shared_db)
    # Synchronising: refused at once, the client sends nothing, the
    # session goes on.
    t0 = time.monotonic()
    s.sendall(b"a1 LOGIN {1000000}\r\n")
    assert recv_line(s) == b"a1 NO [TOOBIG] Literal too big.\r\n"
    assert time.monotonic() - t0 < 2
    s.sendall(b"a2 NOOP\r\n")
    assert recv_line(s) == b"a2 OK NOOP completed.\r\n"
    # Non-synchronising: refused before any byte of it is sent, and the
    # session is closed rather than reading a megabyte to skip it.
    s.sendall(b"a3 ID {1000000+}\r\n")
    assert recv_all(s) == b"a3 BAD [TOOBIG] Literal too big.\r\n* BYE Literal too big.\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_literal_in_bad_command_is_skipped(kind, tmp_path, sora_servers, shared_db):
    # A command that is bad before its literal: the literal's bytes are
    # still skipped, not run.
    s = start(kind, tmp_path, sora_servers, shared_db)
    s.sendall(b"a1 ID x{10+}\r\nb1 LOGOUT\r\na2 NOOP\r\n")
    assert recv_line(s) == b"a1 BAD Missing space between arguments.\r\n"
    assert recv_line(s) == b"a2 OK NOOP completed.\r\n"


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_commands_are_bad_and_counted(kind, tmp_path, sora_servers, shared_db):
    s = start(kind, tmp_path, sora_servers, shared_db, "max_errors = 4")
    s.sendall(b"a1 ID (\"x\"\r\n")
    assert recv_line(s) == b"a1 BAD Missing ')'.\r\n"
    s.sendall(b"a2 LOGIN {1x}\r\n")
    assert recv_line(s) == b"a2 BAD Invalid literal size.\r\n"
    s.sendall(b"a3 NO\x00OP\r\n")
    assert recv_line(s) == b"a3 BAD Invalid command name.\r\n"
    s.sendall(b"a4 LOGIN \xff\r\n")
    rest = recv_all(s)
    assert rest == b"a4 BAD Invalid character in command.\r\n* BYE Too many invalid commands.\r\n"
