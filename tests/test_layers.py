"""The line between the domain and the web: domain packages import no web module (DESIGN.md)."""
import subprocess
import sys
import textwrap

from tests.server import ROOT

DOMAIN = ["backend.chat.turn", "backend.chat.turns", "backend.chat.accounting", "backend.chat.redis_turns",
          "backend.providers.directory", "backend.providers.local.provider", "backend.providers.openai",
          "backend.providers.gemini", "backend.services", "backend.schemas.chat", "backend.schemas.openai",
          "backend.schemas.anthropic", "backend.conversations.store", "backend.conversations.exchange",
          "backend.conversations.legacy", "backend.usage"]
WEB = ("flask", "werkzeug", "flask_socketio", "socketio", "engineio", "flask_limiter")


def test_domain_modules_import_no_web_module():
    script = textwrap.dedent(f"""
        import importlib, sys
        for name in {DOMAIN!r}:
            importlib.import_module(name)
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({WEB!r})))
    """)
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
