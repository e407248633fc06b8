"""The security guide (../shared/spec/security-guide.md), section by section.

Every section of the guide that promises a behaviour has at least one
attack test named after it: a test function whose name starts with
test_guide_<slug> (the slugs are in SECTIONS below), in this file or next
to the feature's other tests (test_net.py for TLS, PROXY, limits and
timeouts, test_imap.py for master logins, ...). test_guide_sections_have_
attack_tests checks the mapping both ways: it fails when the guide gains a
section nobody attacks, and when a section's tests disappear.
docs/security.md has the same table with the code and the metric of each.

The sections whose feature this version does not have (cluster mode,
Let's Encrypt, shared mailboxes, JA4 filters) are attacked by configuring
them exactly as the guide shows: the server must refuse to start with one
error naming file:line and the key -- never run without the protection the
operator asked for.
"""
import ast
import glob
import os
import re
import subprocess
import time

import pytest

from sorafix.common import bin_path, free_port, wait_for, wait_port
from sorafix.imap import simple_message

HERE = os.path.dirname(os.path.abspath(__file__))
GUIDE = os.path.join(HERE, "..", "..", "..", "shared", "spec", "security-guide.md")
SECURITY_DOC = os.path.join(HERE, "..", "..", "docs", "security.md")

# Guide heading -> slug of its tests (test_guide_<slug>...).
SECTIONS = {
    "Transport Layer Security (TLS)": "tls",
    "Authentication": "authentication",
    "Authentication Rate Limiting": "auth_rate_limiting",
    "PROXY Protocol": "proxy_protocol",
    "Client-Side S3 Encryption": "s3_encryption",
    "Search Result Limits": "search_result_limits",
    "Search Rate Limiting": "search_rate_limiting",
    "Session Memory Limits": "session_memory_limits",
    "Message Size Limits": "message_size_limits",
    "Connection Limits": "connection_limits",
    "Command Timeout and Slowloris Protection": "command_timeouts",
    "Cluster-Wide Rate Limiting": "cluster_rate_limiting",
    "TLS Certificate Management": "certificate_management",
    "Shared Mailbox Security (ACL)": "shared_mailbox_acl",
    "JA4 TLS Fingerprinting": "ja4_fingerprinting",
    "API Security": "api_security",
    "Cluster Security": "cluster_security",
    "Incident Response": "incident_response",
}
# Level-2 headings that promise no behaviour of their own: a container
# whose level-3 subsections are the sections, and two lists.
CONTAINERS = {"Resource Limits and DoS Protection"}
NOT_SECTIONS = {"Security Checklist", "Additional Resources"}


def guide_sections(text):
    """The guide's sections: its '## ' headings, with a container replaced
    by its '### ' subsections."""
    out, container = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            container = title in CONTAINERS
            if not container and title not in NOT_SECTIONS:
                out.append(title)
        elif line.startswith("### ") and container:
            out.append(line[4:].strip())
    return out


def guide_test_names():
    names = {}
    for path in glob.glob(os.path.join(HERE, "test_*.py")):
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_guide_"):
                names[node.name] = os.path.basename(path)
    return names


def test_guide_sections_have_attack_tests():
    if os.path.exists(GUIDE):
        assert guide_sections(open(GUIDE).read()) == list(SECTIONS), \
            "the security guide's sections changed: update SECTIONS and add their tests"
    names = guide_test_names()
    doc = open(SECURITY_DOC).read()
    for title, slug in SECTIONS.items():
        mine = [n for n in names if n == "test_guide_" + slug or n.startswith("test_guide_" + slug + "_")]
        assert mine, f"no attack test for the guide's section {title!r} (test_guide_{slug}_...)"
        for n in mine:
            assert n in doc, f"docs/security.md does not list {n} ({names[n]}) under {title!r}"


# ---------------------------------------------------------------- refused features


def run_config(binary, text, tmp_path, check_only):
    cfg = tmp_path / "guide.toml"
    cfg.write_text(text)
    args = [bin_path(binary), "--config", str(cfg)] + (["--check-config"] if check_only else [])
    return cfg, subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=str(tmp_path))


def assert_refused(binary, text, tmp_path, want, port):
    """--check-config and a real start both fail with exit 2 and exactly one
    error line naming file:line and the key; nothing listens."""
    for check_only in (True, False):
        cfg, r = run_config(binary, text, tmp_path, check_only)
        assert r.returncode == 2, f"check_only={check_only} rc={r.returncode}\n{r.stderr}"
        errors = [l for l in r.stderr.splitlines() if l.startswith(binary + ": ")]
        assert len(errors) == 1, r.stderr
        assert re.search(re.escape(str(cfg)) + r":\d+: " + want, errors[0]), errors[0]
        with pytest.raises(OSError):
            wait_port(port, timeout=0.2)


def proxy_server(port):
    return (f'\n[servers.imap_proxy]\naddr = "127.0.0.1:{port}"\n'
            'remote_addrs = ["127.0.0.1:1"]\n')


# The guide's blocks, verbatim.
CLUSTER_BLOCK = '''[cluster]
enabled = true
bind_addr = "0.0.0.0"
bind_port = 7946
node_id = "node-1"
peers = ["node-2:7946", "node-3:7946"]
secret_key = "base64-encoded-32-byte-key"  # Generate: openssl rand -base64 32

# Cluster-wide rate limiting (enabled by default when cluster is enabled)
[cluster.rate_limit_sync]
enabled = true              # Enable cluster-wide rate limiting
sync_blocks = true          # Sync IP blocks across nodes
sync_failure_counts = true  # Sync progressive delays across nodes
'''

LETSENCRYPT_BLOCK = '''[tls]
enabled = true
provider = "letsencrypt"

[tls.letsencrypt]
email = "admin@example.com"
domains = ["mail.example.com", "imap.example.com"]
storage_provider = "s3"      # Store certificates in S3
renew_before = "720h"        # Optional: renew 30 days before expiry (default)

[tls.letsencrypt.s3]
bucket = "sora-tls-certificates"
region = "us-east-1"
'''

SHARED_MAILBOXES_BLOCK = '''[shared_mailboxes]
enabled = true
namespace_prefix = "Shared/"
allow_user_create = true          # Or false for admin-only
default_rights = "lrswipkxtea"    # Full rights for creators
'''

JA4_FILTER_BLOCK = '''
# Disable IDLE for iOS Mail clients
[[servers.client_filters]]
ja4_fingerprint = "^t13d1516h2_.*"
disable_caps = ["IDLE"]
reason = "iOS Mail client with known IDLE issues"
'''


REAL_CLUSTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def guide_has(block):
    if not os.path.exists(GUIDE):
        return True
    return block.strip() in open(GUIDE).read()


@pytest.mark.parametrize("binary", ["sora-proxy", "sora-backend"])
def test_guide_cluster_rate_limiting_refused_not_ignored(tmp_path, binary):
    # Without gossip a node cannot honour "blocked cluster-wide"; starting
    # anyway would leave the operator believing it does. The limiter's
    # blocks are shared through PostgreSQL instead (auth_rate_limiting).
    assert guide_has(CLUSTER_BLOCK)
    port = free_port()
    server = (proxy_server(port) if binary == "sora-proxy" else
              f'\n[servers.imap]\naddr = "127.0.0.1:{port}"\n')
    # As printed, the guide's placeholder is not a key: that is the error.
    assert_refused(binary, CLUSTER_BLOCK + server, tmp_path,
                   r"key 'secret_key' in \[cluster\]: must be the base64 encoding of 32 random bytes",
                   port)
    text = CLUSTER_BLOCK.replace("base64-encoded-32-byte-key", REAL_CLUSTER_KEY) + server
    assert_refused(binary, text, tmp_path, r"key 'enabled' in \[cluster\]: cluster mode", port)


def test_guide_cluster_security_no_gossip_port_opened(tmp_path):
    # The guide's advice is about the gossip port (7946): this version
    # opens none, with or without [cluster]; a configured cluster is
    # refused (above) rather than started without its encryption.
    port = free_port()
    _, r = run_config("sora-proxy", CLUSTER_BLOCK.replace("base64-encoded-32-byte-key", REAL_CLUSTER_KEY)
                      + proxy_server(port), tmp_path, False)
    assert r.returncode == 2, r.stderr
    out = subprocess.run(["ss", "-Hltun"], capture_output=True, text=True).stdout
    assert ":7946 " not in out


def test_guide_certificate_management_letsencrypt_refused(tmp_path):
    assert guide_has(LETSENCRYPT_BLOCK)
    port = free_port()
    assert_refused("sora-proxy", LETSENCRYPT_BLOCK + proxy_server(port), tmp_path,
                   r"key 'provider' in \[tls\]: provider = \"letsencrypt\" is not available", port)


def test_guide_shared_mailbox_acl_refused_and_commands_unknown(tmp_path, imap_backend):
    assert guide_has(SHARED_MAILBOXES_BLOCK)
    port = free_port()
    assert_refused("sora-backend", SHARED_MAILBOXES_BLOCK +
                   f'\n[servers.imap]\naddr = "127.0.0.1:{port}"\n', tmp_path,
                   r"key 'enabled' in \[shared_mailboxes\]: shared mailboxes are not available", port)
    # No ACL capability, and the guide's ACL commands are unknown commands:
    # nobody can read or grant rights on another user's mailbox.
    b = imap_backend.start()
    b.account("alice@example.com")
    b.account("mallory@example.com")
    r = b.raw()
    r.login("mallory@example.com")
    caps = " ".join(r.cmd("c", "CAPABILITY"))
    assert " ACL" not in caps and "RIGHTS=" not in caps, caps
    for cmd in ('MYRIGHTS "Shared/TeamInbox"', 'GETACL "Shared/TeamInbox"',
                'SETACL INBOX mallory@example.com lrswi', 'DELETEACL INBOX alice@example.com',
                'SELECT "Shared/TeamInbox"', 'SELECT "#shared/alice@example.com/INBOX"'):
        resp = r.cmd("t", cmd)
        assert resp[-1].startswith(("t BAD", "t NO")), (cmd, resp)
    r.close()


def test_guide_ja4_fingerprinting_filter_refused(tmp_path):
    assert guide_has(JA4_FILTER_BLOCK)
    port = free_port()
    text = f'[[servers]]\ntype = "imap"\naddr = "127.0.0.1:{port}"\n' + JA4_FILTER_BLOCK
    assert_refused("sora-backend", text, tmp_path,
                   r"key 'ja4_fingerprint' in \[\[servers.client_filters\]\]: client filtering by JA4 "
                   r"fingerprint is not available", port)


# ---------------------------------------------------------------- S3 encryption


KEY1, KEY2 = "a1" * 32, "b2" * 32


def encrypted_top(key):
    return f'[s3]\nencrypt = true\nencryption_key = "{key}"\n'


def test_guide_s3_encryption_bodies_unreadable_at_rest(imap_backend):
    b = imap_backend
    b.start(top=encrypted_top(KEY1))
    b.account("bob@example.com")
    marker = "SECRET-%d-MARKER" % time.time_ns()
    b.deliver("bob@example.com", simple_message(subject="s3 encryption", body=marker + "\r\n"))
    wait_for(lambda: b.sql("SELECT count(*) FROM pending_uploads") == "0", timeout=30,
             what="upload")
    stored = 0
    for root in (b.blobs, b.staging):
        for dirpath, _, files in os.walk(root):
            for f in files:
                data = open(os.path.join(dirpath, f), "rb").read()
                assert marker.encode() not in data, os.path.join(dirpath, f)
                stored += dirpath.startswith(b.blobs)
    assert stored >= 1

    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    out = r.cmd("f", "FETCH 1 BODY.PEEK[TEXT]")
    assert out[-1].startswith("f OK") and any(marker in l for l in out), out
    r.close()

    # The wrong key: never plaintext nor garbage. The body is read before
    # any byte of its message is sent, so the message is skipped, the
    # others are sent, the FETCH ends with NO and the session goes on; the
    # log says which object and key id.
    b.server.stop()
    b.start(top=encrypted_top(KEY2))
    b.deliver("bob@example.com", simple_message(subject="new key", body="readable\r\n"))
    r = b.raw()
    r.login("bob@example.com")
    r.cmd("s", "SELECT INBOX")
    out = r.cmd("f", "FETCH 1:2 BODY.PEEK[TEXT]")
    assert out[-1] == ("f NO [UNAVAILABLE] 1 message could not be read (the others were "
                       "sent): try again later."), out
    assert not any(marker in l for l in out), out
    assert not any(l.startswith("* 1 FETCH") for l in out), out
    assert any(l.startswith("* 2 FETCH") for l in out) and "readable" in out, out
    assert r.cmd("n", "NOOP")[-1].startswith("n OK")
    r.close()
    wait_for(lambda: "which is not configured" in b.server.log(), what="key error in the log")
