"""The server's entry point (`rill serve`, `python -m rill.entry`): patches first, then builds
and serves the app. `flask --app rill rill token alice` builds it without either: no patching, no
server, no model."""
import logging
import os


def patch() -> None:
    """eventlet must patch the standard library before anything else imports it."""
    if os.environ.get("RILL_ASYNC_MODE", "eventlet") == "eventlet":
        import eventlet
        import eventlet.patcher

        eventlet.monkey_patch()
        # Prometheus' values are counted from the model's OS thread too. A green lock is Python code
        # (dear, once a token) and one that an OS thread holds hangs the server (see real_locks);
        # theirs are never held across a switch, so real ones are safe.
        from prometheus_client import metrics, values

        metrics.Lock = values.Lock = eventlet.patcher.original("threading").Lock


def real_locks() -> None:
    """Log handlers made after patching hold green locks, and a green lock that an OS thread (a
    model's thread, llama.cpp's log callback) holds while the server's thread waits for it hangs
    the server for good: seen once as a server that never answered /health. Real locks only
    make a waiter wait for one line to be written."""
    import eventlet.patcher

    for handler in logging.getLogger().handlers:
        handler.lock = eventlet.patcher.original("threading").RLock()


def main(providers=()) -> None:
    from rill import create_app, logs
    from rill.config import Settings
    from rill.server import serve

    settings = Settings.from_env()
    logs.configure(settings)
    real_locks()
    app = create_app(settings, providers=providers)
    rill = app.extensions["rill"]
    rill.providers.open()  # load models now, not at the first request
    rill.turns.start_background()  # with several workers: heartbeats, cancels, dead workers' turns
    print(f"Rill on http://{settings.host}:{settings.port} ({settings.async_mode})", flush=True)
    serve(app)


if __name__ == "__main__":
    patch()
    main()
