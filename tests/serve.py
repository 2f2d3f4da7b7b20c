"""Run the real server with the scripted provider added: python -m tests.serve."""
import app  # noqa: I001  (first: it monkey-patches under eventlet)

from tests.scripted import ScriptedProvider

if __name__ == "__main__":
    app.main(providers=[ScriptedProvider()])
