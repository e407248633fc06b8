"""The systemd units in deploy/systemd/ start on a real host.

- `systemd-analyze verify` accepts each unit without a single complaint (it
  exits 0 even for unknown keys and unparsable values, so any output fails
  the test). Skipped, with the reason, where systemd-analyze is missing;
  deploy/install-deps.sh installs it (Debian's `systemd` package).
- Nothing the unit needs must be made by hand: a missing ReadWritePaths=
  directory fails the start (226/NAMESPACE), and /run is empty after boot.
- Under ProtectSystem=strict only the directories systemd creates for the
  unit (StateDirectory=, CacheDirectory=, RuntimeDirectory=, LogsDirectory=)
  and ReadWritePaths= are writable. Every path the example configs write
  to, for the binary the unit runs, lies inside one of them, relative paths
  resolved as the loader does: against `base_dir` when the config sets it,
  else against WorkingDirectory=.

The units name /usr/local/bin/sora-*; verify checks that the binaries exist,
so it runs on a copy that points at the ones just built, changed in nothing
else.
"""
import os
import shutil
import subprocess
import tomllib

import pytest

from sorafix.common import BIN, ROOT, bin_path

UNITS_DIR = os.path.join(ROOT, "deploy", "systemd")
EXAMPLES_DIR = os.path.join(ROOT, "deploy", "examples")

# The unit, the binary it runs, and the examples written for that binary.
UNITS = {
    "sora-backend.service": ("sora-backend", ["backend.toml", "all-in-one.toml"]),
    "sora-proxy.service": ("sora-proxy", ["proxy.toml", "all-in-one.toml"]),
}

BACKEND_TYPES = {"imap", "pop3", "lmtp", "managesieve"}


def read_unit(name):
    """The [Service] section as {key: [values]}: keys may repeat (Exec lines),
    and each occurrence may hold several space-separated values."""
    section, service = None, {}
    with open(os.path.join(UNITS_DIR, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service":
                key, _, value = line.partition("=")
                service.setdefault(key.strip(), []).append(value.strip())
    return service


def values(unit, key):
    out = []
    for v in unit.get(key, []):
        out.extend(v.split())
    return out


def test_every_unit_is_checked():
    found = sorted(f for f in os.listdir(UNITS_DIR) if f.endswith(".service"))
    assert found == sorted(UNITS), "update UNITS in this file for deploy/systemd/"


@pytest.mark.parametrize("unit_name", sorted(UNITS))
def test_unit_verifies(tmp_path, unit_name):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; "
                    "deploy/install-deps.sh installs it)")
    binary = bin_path(UNITS[unit_name][0])
    text = open(os.path.join(UNITS_DIR, unit_name)).read()
    assert "/usr/local/bin/" + os.path.basename(binary) in text
    copy = tmp_path / unit_name
    copy.write_text(text.replace("/usr/local/bin/", os.path.abspath(BIN) + "/"))
    r = subprocess.run([analyze, "verify", "--man=no", str(copy)],
                       capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and out == "", f"systemd-analyze verify {unit_name}:\n{out}"


def writable_dirs(unit):
    """What ProtectSystem=strict leaves writable for the unit."""
    assert values(unit, "ProtectSystem") == ["strict"]
    dirs = []
    for key, base in (("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache"),
                      ("RuntimeDirectory", "/run"), ("LogsDirectory", "/var/log")):
        dirs += [os.path.join(base, d) for d in values(unit, key)]
    dirs += [p.lstrip("-") for p in values(unit, "ReadWritePaths")]
    return dirs


def written_paths(config, binary):
    """The files and directories a config makes `binary` write to."""
    out = []
    for name, srv in config.get("servers", {}).items():
        if not isinstance(srv, dict):
            continue
        kind = srv.get("type", name)
        if srv.get("start", True) is False:
            continue
        mine = kind in ("metrics", "http_api") or \
            (kind.endswith("_proxy") if binary == "sora-proxy" else kind in BACKEND_TYPES)
        addr = srv.get("addr", "")
        if mine and addr.startswith("unix:"):
            out.append(("servers.%s addr" % name, os.path.dirname(addr[5:])))
    output = config.get("logging", {}).get("output", "stderr")
    if output not in ("stderr", "stdout", "syslog"):
        out.append(("logging output", output))
    if binary == "sora-backend":
        if config.get("storage", {}).get("backend", "fs") == "fs":
            out.append(("storage fs_path", config.get("storage", {}).get("fs_path", "var/blobs")))
        out.append(("uploader path", config.get("uploader", {}).get("path", "var/staging")))
        out.append(("local_cache path", config.get("local_cache", {}).get("path", "var/cache")))
    return out


@pytest.mark.parametrize("unit_name", sorted(UNITS))
def test_unit_needs_no_directory_made_by_hand(unit_name):
    # systemd sets up the mount namespace before the service runs: a
    # ReadWritePaths= entry (without a leading "-") that does not exist
    # fails the start with status 226/NAMESPACE, and /run is empty after
    # every boot. The unit creates what it writes to instead.
    unit = read_unit(unit_name)
    made = [d for d in writable_dirs(unit) if d not in values(unit, "ReadWritePaths")]
    for p in values(unit, "ReadWritePaths"):
        if not p.startswith("-"):
            assert any(p == d or p.startswith(d + "/") for d in made), \
                f"{unit_name}: ReadWritePaths={p} must exist before the unit starts; " \
                "use StateDirectory=/CacheDirectory=/RuntimeDirectory= (or prefix it with -)"
    for p in values(unit, "WorkingDirectory"):
        assert p.startswith("-") or any(p == d or p.startswith(d + "/") for d in made), \
            f"{unit_name}: WorkingDirectory={p} is not created by the unit"


@pytest.mark.parametrize("unit_name,example",
                         [(u, e) for u, (_, es) in sorted(UNITS.items()) for e in es])
def test_example_paths_are_writable_under_the_unit(unit_name, example):
    unit = read_unit(unit_name)
    binary = UNITS[unit_name][0]
    workdir = values(unit, "WorkingDirectory")
    assert workdir, f"{unit_name}: no WorkingDirectory= (relative paths would resolve against /)"
    dirs = writable_dirs(unit)
    with open(os.path.join(EXAMPLES_DIR, example), "rb") as f:
        config = tomllib.load(f)
    base = config.get("base_dir", workdir[0])
    for what, path in written_paths(config, binary):
        # Only the mail directories resolve against base_dir
        # (docs/configuration.md, Relative paths); the rest is as given.
        mail_dir = what in ("storage fs_path", "uploader path", "local_cache path")
        full = os.path.normpath(os.path.join(base if mail_dir else workdir[0], path))
        assert any(full == d or full.startswith(d.rstrip("/") + "/") for d in dirs), \
            f"{example}: {what} = {path} ({full}) is read-only under {unit_name} " \
            f"(writable: {', '.join(dirs)})"
