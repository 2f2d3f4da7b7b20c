"""The line between the domain and the web: domain packages import no web module (DESIGN.md)."""
import subprocess
import sys
import textwrap

from tests.server import ROOT

DOMAIN = ["rill.chat.turn", "rill.chat.turns", "rill.chat.accounting", "rill.chat.redis_turns",
          "rill.providers.directory", "rill.providers.local.provider", "rill.providers.openai",
          "rill.providers.gemini", "rill.services", "rill.schemas.chat", "rill.schemas.openai",
          "rill.schemas.anthropic", "rill.conversations.store", "rill.conversations.exchange",
          "rill.conversations.legacy", "rill.usage"]
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
