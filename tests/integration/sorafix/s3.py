"""The SigV4-verifying S3 server (@20minutes/s3rver, pinned in ../s3)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from .common import free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
S3DIR = os.path.join(HERE, "..", "s3")
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"


class S3Server:
    def __init__(self, bucket="sora-test"):
        if not os.path.isdir(os.path.join(S3DIR, "node_modules", "@20minutes", "s3rver")):
            pytest.fail("test S3 server not installed (deploy/install-deps.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="sora-s3-")
        self.port = free_port()
        self.bucket = bucket
        self.log_path = os.path.join(self.dir, "s3rver.log")
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["node", os.path.join(S3DIR, "s3rver.js"), "-d", os.path.join(self.dir, "data"),
             "-a", "127.0.0.1", "-p", str(self.port), "--configure-bucket", self.bucket],
            cwd=S3DIR, env=env, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc, timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.logf.close()

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.port}"

    def config_block(self, encrypt=False, key=None):
        s = (f'[s3]\nendpoint = "{self.endpoint}"\nregion = "us-east-1"\nbucket = "{self.bucket}"\n'
             f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\nuse_ssl = false\n'
             f'path_style = true\n')
        if encrypt:
            s += f'encrypt = true\nencryption_key = "{key}"\n'
        return s

    def boto3(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3():
    s = S3Server()
    yield s
    s.destroy()
