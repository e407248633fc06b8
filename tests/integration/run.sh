#!/usr/bin/env bash
# Runs the pytest integration suite with the Debian python (which has the
# apt-installed pytest and boto3). Extra arguments go to pytest.
set -u
cd "$(dirname "$0")"
/usr/bin/python3 -m pytest -p no:cacheprovider -rfE --durations=15 "$@"
rc=$?
# Exit status 5 means no test was collected: that is a failure here.
exit $rc
