#!/usr/bin/env python3
"""Runs bench-blob (upload throughput, encryption on and off) against the
test S3 server started for this run."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from sorafix.s3 import S3Server  # noqa: E402

binary = sys.argv[1]
s3 = S3Server(bucket="sora-bench")
try:
    env = dict(os.environ, SORA_TEST_S3_ENDPOINT=s3.endpoint, SORA_TEST_S3_BUCKET=s3.bucket)
    sys.exit(subprocess.run([binary], env=env).returncode)
finally:
    s3.destroy()
