"""What the tests and the browser tests share: the real server, started once per async mode."""
import atexit
import os
import re
import shutil
import tempfile

import pytest

# No test reaches the real Hugging Face hub or sees the developer's pulled models: the run has a hub
# cache of its own, offline (the pull tests point their own at a loopback stand-in, tests/fake_hub.py).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="rill-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], True)
os.environ["HF_HUB_OFFLINE"] = "1"

from tests.server import start_server, stop_server

ALL_SLOW = re.compile(r"^pytestmark = .*pytest\.mark\.slow", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    """The fast tier (-m "not slow") does not import the modules whose tests are all slow: their
    imports (torch, transformers, the SDKs, Playwright) took a third of its minute."""
    if config.getoption("markexpr") == "not slow" and collection_path.suffix == ".py" \
            and ALL_SLOW.search(collection_path.read_text()):
        return True
    return None


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    """servers(mode): the real server with the real model and default settings (plus the scripted
    provider), started when first asked for and shared by every module that needs no settings of
    its own; a server start is seconds of the test run's time."""
    started = {}

    def get(mode: str):
        if mode not in started:
            started[mode] = start_server(mode, tmp_path_factory.mktemp(f"server-{mode}"))
        return started[mode]

    yield get
    for srv in started.values():
        stop_server(srv)
