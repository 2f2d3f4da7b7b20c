"""Entry point: `python app.py` patches first, then builds and serves the app.

`flask --app app rill token alice` uses create_app() below: no patching, no server, no model.
"""
import logging
import os


def patch() -> None:
    """eventlet must patch the standard library before anything else imports it."""
    if os.environ.get("RILL_ASYNC_MODE", "eventlet") == "eventlet":
        import eventlet

        eventlet.monkey_patch()


def create_app():
    from backend import create_app as factory

    return factory()


def main(providers=()) -> None:
    from backend import create_app
    from backend.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(providers=providers)
    settings = app.config["RILL"]
    app.extensions["rill"].engine.start()  # load models now, not at the first request
    print(f"Rill on http://{settings.host}:{settings.port} ({settings.async_mode})", flush=True)
    serve(app)


if __name__ == "__main__":
    patch()
    main()
