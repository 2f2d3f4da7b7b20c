"""The entry point's setup under eventlet: logging from OS threads (a model's thread, llama.cpp's
log callback) beside the server's own logging."""
import subprocess
import sys
import textwrap

from tests.server import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    from rill import entry as app
    app.patch()
    import logging, eventlet, eventlet.patcher
    logging.basicConfig(level=logging.INFO, stream=open("/dev/null", "w"))
    app.real_locks()
    log = logging.getLogger("both")

    def from_an_os_thread():
        for i in range(20000):
            log.info("model thread %d", i)

    thread = eventlet.patcher.original("threading").Thread(target=from_an_os_thread)
    thread.start()
    for i in range(20000):
        log.info("server %d", i)
        if i % 100 == 0:
            eventlet.sleep(0)
    thread.join()
    print("done")
""")


def test_logging_from_os_threads_never_hangs_the_server():
    # With the handler's green lock, this fails at once ("Cannot switch to a different thread") or hangs.
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
