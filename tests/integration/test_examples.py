"""What a first operator runs into before any mail flows: the example configs,
--check-config, and features that are configured but not in this version.

- Every file in deploy/examples/ passes `--check-config` with the binary (or
  binaries) it is for, without a single warning.
- `--check-config` exits 2 when it printed warnings (an unknown key such as
  `[servers.lmtp.proxy_protocl]` silently leaves PROXY off), like `nginx -t`;
  a server started with the same file only warns.
- A server type or feature that the loader parses but this version does not
  have is one error naming the key (file:line), exit 2 under --check-config,
  and the server does not start with it.

None of this needs PostgreSQL: --check-config touches nothing remote, and the
servers started here are proxies, which do not connect to the database.
"""
import glob
import os
import re
import subprocess

import pytest

from sorafix.common import ROOT, bin_path, free_port, wait_port

EXAMPLES_DIR = os.path.join(ROOT, "deploy", "examples")

# Which binary each example is for. A new example must be added here, or
# test_every_example_is_checked fails: an example nobody checks rots.
EXAMPLES = {
    "backend.toml": ["sora-backend"],
    "proxy.toml": ["sora-proxy"],
    "all-in-one.toml": ["sora-backend", "sora-proxy"],
}

# A log line at warning level, in the console or the JSON format.
WARNING = re.compile(r' WARN |"level":"warn"')


def check_config(binary, path, cwd):
    return subprocess.run([bin_path(binary), "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=30, cwd=str(cwd))


def test_every_example_is_checked():
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES_DIR, "*.toml")))
    assert found == sorted(EXAMPLES), "update EXAMPLES in this file for deploy/examples/"


@pytest.mark.parametrize("example,binary", [(e, b) for e, bs in sorted(EXAMPLES.items()) for b in bs])
def test_example_passes_check_config(tmp_path, example, binary):
    # Run from an empty directory: relative paths in the examples must not
    # depend on what the source tree holds.
    r = check_config(binary, os.path.join(EXAMPLES_DIR, example), tmp_path)
    assert r.returncode == 0, f"{binary} --check-config {example}: rc={r.returncode}\n{r.stderr}"
    assert "is valid" in r.stdout
    assert not WARNING.search(r.stderr), f"{example} warns with {binary}:\n{r.stderr}"


# ---------------------------------------------------------------- warnings

LMTP_TYPO = """\
[servers.lmtp]
addr = "127.0.0.1:{port}"

[servers.lmtp.proxy_protocl]
enabled = true
trusted_proxies = ["10.0.0.0/8"]
"""


def test_check_config_fails_on_warnings(tmp_path):
    cfg = tmp_path / "typo.toml"
    cfg.write_text(LMTP_TYPO.format(port=free_port()))
    r = check_config("sora-backend", cfg, tmp_path)
    assert r.returncode == 2, r.stderr
    assert "typo.toml:4: unknown table [servers.lmtp.proxy_protocl]" in r.stderr
    assert "1 warning above" in r.stderr and "--check-config fails" in r.stderr
    assert "is valid" not in r.stdout
    # The same file with the typo fixed passes.
    cfg.write_text(LMTP_TYPO.format(port=free_port()).replace("proxy_protocl", "proxy_protocol"))
    r = check_config("sora-backend", cfg, tmp_path)
    assert r.returncode == 0, r.stderr


def test_server_starts_despite_warnings(tmp_path, sora_servers):
    port = free_port()
    text = (f'[servers.imap_proxy]\naddr = "127.0.0.1:{port}"\nremote_addrs = ["127.0.0.1:1"]\n'
            'colour = "blue"\n')
    cfg = tmp_path / "warn.toml"
    cfg.write_text(text)
    r = check_config("sora-proxy", cfg, tmp_path)
    assert r.returncode == 2 and "1 warning above" in r.stderr, r.stderr
    s = sora_servers("sora-proxy", text, wait_ports=[port])
    assert "unknown key 'colour'" in s.log()
    assert s.proc.poll() is None


# ---------------------------------------------------------------- not in this version

# (binary, config, the line and key the one error must name)
UNAVAILABLE = {
    "managesieve": ("sora-backend", '[servers.managesieve]\naddr = "127.0.0.1:{port}"\n',
                    ":1: [servers.managesieve]: server type 'managesieve' is not available"),
    "cluster": ("sora-proxy",
                '[cluster]\nenabled = true\nsecret_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n',
                ":2: key 'enabled' in [cluster]: cluster mode"),
    "letsencrypt": ("sora-proxy",
                    '[tls]\nenabled = true\nprovider = "letsencrypt"\n\n[tls.letsencrypt]\n'
                    'email = "postmaster@example.com"\ndomains = ["mail.example.com"]\n',
                    ":3: key 'provider' in [tls]: provider = \"letsencrypt\" is not available"),
    "tls_manager": ("sora-backend", '[tls]\nenabled = true\n',
                    ":2: key 'enabled' in [tls]: the [tls] certificate manager is not available"),
    "shared_mailboxes": ("sora-backend", '[shared_mailboxes]\nenabled = true\n',
                         ":2: key 'enabled' in [shared_mailboxes]: shared mailboxes are not available"),
    "client_filters": ("sora-proxy",
                       '[[servers.imap_proxy.client_filters]]\nja4_fingerprint = "^t13d.*"\n',
                       ":1: key 'ja4_fingerprint' in [[servers.imap_proxy.client_filters]]: client filtering"),
}

# What the proxy features above hang on (appended after the feature, so
# the feature's line numbers stay small and fixed).
PROXY_SERVER = ('\n[servers.imap_proxy]\naddr = "127.0.0.1:{port}"\n'
                'remote_addrs = ["127.0.0.1:1"]\n')


@pytest.mark.parametrize("feature", sorted(UNAVAILABLE))
def test_unavailable_feature_is_one_error(tmp_path, feature):
    binary, text, want = UNAVAILABLE[feature]
    port = free_port()
    text = text.format(port=port)
    if "imap_proxy" in text or binary == "sora-proxy" and "[servers" not in text:
        text += PROXY_SERVER.format(port=port)
    cfg = tmp_path / "feature.toml"
    cfg.write_text(text)

    r = check_config(binary, cfg, tmp_path)
    assert r.returncode == 2, f"rc={r.returncode}\n{r.stderr}"
    errors = [l for l in r.stderr.splitlines() if l.startswith(binary + ": ")]
    assert len(errors) == 1, r.stderr
    assert str(cfg) + want in errors[0], errors[0]
    assert "is valid" not in r.stdout

    # Starting is refused too, as a configuration error (exit 2), and
    # nothing is left listening.
    r = subprocess.run([bin_path(binary), "--config", str(cfg)], capture_output=True,
                       text=True, timeout=30, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert str(cfg) + want in r.stderr
    with pytest.raises(OSError):
        wait_port(port, timeout=0.2)
