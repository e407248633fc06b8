"""Shared helpers: free ports, binaries, certificates, running Sora servers.

Every test gets its own temp directory and kernel-chosen ports; nothing
depends on a service started by hand.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("SORA_BIN", os.path.join(ROOT, "bin"))


def bin_path(name):
    p = os.path.join(BIN, name)
    if not os.path.exists(p):
        pytest.fail(f"{p} not built (run make)")
    return p


_handed_out = set()


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on host, and that this
    process has not handed out before: the kernel may give the same port
    to two bind(0) calls in a row once the first socket is closed, and a
    test that asks for two ports before starting its servers would then
    configure two servers on one port."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh free port")


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


class SoraServer:
    """A sora-backend or sora-proxy process with a generated config."""

    def __init__(self, binary, workdir, config_text, name="sora"):
        self.binary = binary
        self.workdir = workdir
        self.config_path = os.path.join(workdir, f"{name}.toml")
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.proc = None

    def start(self, wait_ports=(), timeout=15.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        for p in wait_ports:
            wait_port(p, proc=self.proc, timeout=timeout)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=10.0):
        return wait_for(lambda: needle in self.log(), timeout=timeout, what=f"log line {needle!r}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.binary} did not exit within {timeout}s of SIGTERM")
        finally:
            self.logf.close()
        return self.proc.returncode


@pytest.fixture
def sora_servers(tmp_path):
    """Factory: sora_servers(binary_name, config_text, wait_ports) -> SoraServer.
    All started servers are stopped (SIGTERM) at the end of the test."""
    started = []

    def make(binary, config_text, wait_ports=(), name=None):
        s = SoraServer(bin_path(binary), str(tmp_path), config_text, name or binary)
        started.append(s)
        return s.start(wait_ports)

    yield make
    for s in started:
        if s.proc and s.proc.poll() is None:
            s.stop()
        elif s.proc and s.proc.returncode not in (0, None):
            print(s.log())
    # Binaries built with `make asan` report memory errors and leaks in
    # their logs: those fail the test that ran them.
    for s in started:
        text = s.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, f"{s.binary}: sanitizer report in {s.log_path}:\n{text[-4000:]}"



def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(dirpath, name, cn, ca=None, client=False):
    """Creates name.key/name.crt in dirpath, signed by ca=(crt, key) or self-signed CA."""
    key = os.path.join(dirpath, f"{name}.key")
    crt = os.path.join(dirpath, f"{name}.crt")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key, cwd=dirpath)
    if ca is None:
        _openssl("req", "-x509", "-new", "-key", key, "-out", crt, "-days", "30", "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign",
                 cwd=dirpath)
    else:
        csr = os.path.join(dirpath, f"{name}.csr")
        ext = os.path.join(dirpath, f"{name}.ext")
        with open(ext, "w") as f:
            if client:
                f.write("extendedKeyUsage=clientAuth\n")
            else:
                f.write(f"subjectAltName=DNS:{cn},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={cn}", cwd=dirpath)
        _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                 "-out", crt, "-days", "30", "-extfile", ext, cwd=dirpath)
    return crt, key


class Certs:
    def __init__(self, d):
        self.dir = d
        self.ca_crt, self.ca_key = make_cert(d, "ca", "Sora Test CA")
        ca = (self.ca_crt, self.ca_key)
        self.server_crt, self.server_key = make_cert(d, "server", "mail.test", ca)
        self.server2_crt, self.server2_key = make_cert(d, "server2", "mail2.test", ca)
        self.client_crt, self.client_key = make_cert(d, "client", "client.test", ca, client=True)
        # Server file with the full chain (leaf + CA).
        self.server_chain = os.path.join(d, "server-chain.pem")
        with open(self.server_chain, "w") as out:
            for p in (self.server_crt, self.ca_crt):
                out.write(open(p).read())


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("certs")))


def which(name):
    p = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if p is None:
        pytest.fail(f"{name} is not installed (deploy/install-deps.sh installs it)")
    return p
