"""Rill's logging (rill/logs.py) from every kind of thread at once."""
import subprocess
import sys

from tests.server import ROOT


def test_os_threads_and_green_threads_log_at_once_under_eventlet():
    done = subprocess.run([sys.executable, "-m", "tests.log_from_threads"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3"  # every OS thread wrote all its lines
    assert done.stderr.count("rill.test native") == 3 * 3000 and done.stderr.count("rill.test green") == 3 * 3000
