"""Codex CLI (npm @openai/codex, pinned in package.json) runs one `exec` task against Rill's
/v1/responses: the scripted `call` model asks for Codex's own exec_command tool, Codex runs the
command and sends its output back as a function_call_output, and the model's answer quotes it."""
import os
import subprocess

import pytest

from tests.server import ROOT, start_server, stop_server

pytestmark = pytest.mark.slow

CODEX = ROOT / "node_modules" / ".bin" / "codex"
# Web search is a tool OpenAI runs, and sub-agents come as a tool namespace: Rill refuses both (a 400
# naming them), so the configuration for Rill turns them off (as STREAMING_API_DOCS.md shows).
CONFIG = """model = "scripted/call"
model_provider = "rill"
web_search = "disabled"

[agents]
enabled = false

[model_providers.rill]
name = "Rill"
base_url = "{url}/v1"
env_key = "RILL_API_KEY"
wire_api = "responses"
"""


@pytest.fixture(scope="module")
def rill(tmp_path_factory):
    server = start_server("eventlet", tmp_path_factory.mktemp("codex"))  # tests.serve: the scripted models
    yield server
    stop_server(server)


def test_codex_exec_runs_a_task_through_rills_responses_api(rill, tmp_path):
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(CONFIG.format(url=rill.url))
    task = 'exec_command {"cmd": "echo from codex > out.txt && echo written"}'
    result = subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "--sandbox", "danger-full-access", task],
                            cwd=work, env={**os.environ, "CODEX_HOME": str(home), "RILL_API_KEY": "unused"},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (work / "out.txt").read_text() == "from codex\n"  # Codex ran the call the model made
    answer = result.stdout.strip().splitlines()
    assert answer[0].startswith("The result is") and "written" in result.stdout, result.stdout
