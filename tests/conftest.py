import pytest

from tests.server import start_server, stop_server


@pytest.fixture(scope="session", params=["eventlet", "threading"])
def server(request, tmp_path_factory):
    """The real server with the real model, once per async mode."""
    srv = start_server(request.param, tmp_path_factory.mktemp("logs"))
    yield srv
    stop_server(srv)
