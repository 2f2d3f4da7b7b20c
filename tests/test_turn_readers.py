"""Fast tier: who writes a turn's events. A reader waiting for the next one takes the model's
output itself, the pump steps aside while readers do and takes over when they leave, and what
only the pump does (the end: the reply saved, the final event) stays the pump's. In both async
modes: the checks run here (threading) and in a child process under eventlet."""
import subprocess
import sys

from tests.server import ROOT


class Held:
    """A provider that hands its jobs to the test, which writes their output itself."""

    name = "held"

    def __init__(self):
        from rill.runtime import Channel

        self.jobs = Channel()

    def submit(self, job) -> None:
        self.jobs.put(job)


def writer_now() -> object:
    """The thread, or under eventlet the green thread, running now."""
    import greenlet

    from rill import runtime

    return greenlet.getcurrent() if runtime.green() else runtime.real_threading.get_ident()


def start(services, provider: Held):
    """A turn of the held provider, every append recorded with who made it; and its job."""
    from rill.chat.turn import Turn
    from rill.providers.base import ChatMessage, GenerationOptions, Job

    turn = Turn(services, Job(provider, "m", [ChatMessage("user", "hi")], GenerationOptions()), f"t{id(provider)}")
    writers, append = [], turn.log.append

    def recorded(payload):
        writers.append((payload.kind, writer_now()))
        return append(payload)

    turn.log.append = recorded
    services.turns.add(turn)
    return turn, writers, provider.jobs.get(timeout=10)


def produce(job, items, before: float = 0.0, every: float = 0.01) -> None:
    """The items into the job's channel from a thread of their own, one at a time, as a model's
    steps come."""
    import time

    from rill import runtime

    def run():
        time.sleep(before)
        for item in items:
            time.sleep(every)
            job.channel.put(item)
    runtime.os_thread(run, "rill-test")


def check(services) -> None:
    import time

    from rill import runtime
    from rill.providers.base import Finish, Piece, Prompt

    # One reader: after the first item (the pump may hold it when the reader comes), the reader
    # writes every piece; the pump writes the final event and saves nothing here (no thread).
    turn, writers, job = start(services, Held())
    reader, me = turn.follow(keepalive=10), writer_now()
    assert [e.kind for e in next(reader)] == ["start"]
    produce(job, [Prompt(3), *(Piece(w) for w in "abcdefgh"), Finish("stop", 3, 8)])
    got = [e for batch in reader for e in batch]
    assert [e.data.get("token") for e in got if e.kind == "token"] == list("abcdefgh")
    assert got[-1].kind == "done" and got[-1].data["tokens"] == 8 and turn.state.value == "complete"
    tokens = [who for kind, who in writers if kind == "token"]
    assert tokens == [me] * 8, "the reader did not write what it waited for"
    assert [who for kind, who in writers if kind == "done"] != [me], "a reader wrote the end: the pump's work"

    # Two readers: both get every event once, in order, whoever writes them.
    turn, writers, job = start(services, Held())
    seen = runtime.Channel()

    def read(name):
        seen.put((name, [e.seq for batch in turn.follow(keepalive=10) for e in batch if e.kind != "ping"]))
    for name in ("a", "b"):
        runtime.spawn(read, name)
    produce(job, [Prompt(3), *(Piece(str(n)) for n in range(30)), Finish("stop", 3, 30)], before=0.05)
    runs = dict(seen.get(timeout=20) for _ in range(2))
    assert runs["a"] == runs["b"] == list(range(32))

    # A reader that leaves mid-reply: the pump takes over and writes the rest; nothing is lost.
    turn, writers, job = start(services, Held())
    reader = turn.follow(keepalive=10)
    next(reader)
    produce(job, [Prompt(3), Piece("x"), Piece("y")])
    got = []
    while len(got) < 2:
        got += [e.data["token"] for e in next(reader) if e.kind == "token"]
    reader.close()
    job.channel.put(Piece("z"))
    job.channel.put(Finish("stop", 3, 3))
    deadline = time.monotonic() + 10
    while turn.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "".join(turn.pieces) == "xyz" and turn.log.events[-1].kind == "done"
    assert [who for kind, who in writers if kind == "token"][2] != me

    # A reader that stops reading (its client reads slowly) without leaving: the pump takes what
    # waits, and the turn ends and is saved on time (here after 0.1 s, not the second it gives).
    from rill.chat import turn as turn_module

    grace, turn_module.READER_GRACE = turn_module.READER_GRACE, 0.1
    try:
        turn, writers, job = start(services, Held())
        reader = turn.follow(keepalive=30)
        next(reader)
        for item in (Prompt(3), Piece("p"), Piece("q"), Finish("stop", 3, 2)):
            job.channel.put(item)
        deadline = time.monotonic() + 10
        while turn.running and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        turn_module.READER_GRACE = grace
    assert not turn.running and "".join(turn.pieces) == "pq"
    assert [e.kind for batch in reader for e in batch] == ["token", "token", "done"]

    # A turn ended from outside (a shutdown that cannot wait for the model) while its reader waits
    # for the model: the reader gets the final event at once, not after its keep-alive.
    from rill.chat.turn import TurnState, interrupted

    turn, writers, job = start(services, Held())
    reader = turn.follow(keepalive=30)
    next(reader)
    produce(job, [Prompt(3), Piece("a")])
    while not any(e.kind == "token" for e in next(reader)):
        pass

    def end_soon():
        time.sleep(0.2)
        turn.end(TurnState.INTERRUPTED, interrupted())
    runtime.spawn(end_soon)
    began = time.monotonic()
    [final] = [e for batch in reader for e in batch]
    assert final.kind == "error" and time.monotonic() - began < 5


def test_readers_write_what_they_wait_for_in_threading_mode(app):
    check(app.extensions["rill"])


SCRIPT = """
import sys
from rill import entry
entry.patch()
from pathlib import Path
from rill import create_app
from rill.config import Settings
from tests.test_turn_readers import check
data = Path(sys.argv[1])
app = create_app(Settings(cache_dir=str(data / "cache"), data_dir=str(data / "data"), async_mode="eventlet",
                          model_path=str(data / "none.gguf")), providers=[])
check(app.extensions["rill"])
print("checked")
"""


def test_readers_write_what_they_wait_for_under_eventlet(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 0 and "checked" in done.stdout, done.stdout + done.stderr
