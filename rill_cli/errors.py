"""The one error the client shows: a line that says what went wrong and what to do."""


class ClientError(Exception):
    pass


def http_error(status: int, message: str, retry_after: str | None = None) -> ClientError:
    """A refused request as one line: what the server said, and the retry time on a 429."""
    if status == 401:
        return ClientError(f"authentication failed: {message} (set RILL_TOKEN, or the backend's key)")
    if status == 429:
        wait = f"; retry in {retry_after} s" if retry_after else ""
        return ClientError(f"rate limited: {message}{wait}")
    return ClientError(f"server answered {status}: {message}")
