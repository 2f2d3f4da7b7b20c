"""Run the real server with the scripted provider added: python -m tests.serve."""
from rill import entry

entry.patch()  # before anything else imports the standard library's networking

from tests.scripted import ScriptedProvider  # noqa: E402

if __name__ == "__main__":
    entry.main(providers=[ScriptedProvider()])
