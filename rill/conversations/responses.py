"""Stored responses (the Responses API's `store: true`), in the threads' database: each keeps its
own input items and the response object; the conversation before it is the chain of
`previous_id`s. A response belongs to the user who made it: for anyone else it does not exist."""
from __future__ import annotations

import time

from sqlalchemy import delete, insert, select, update

from ..refusals import Refused
from .schema import responses
from .store import ThreadStore


class ResponseStore:
    def __init__(self, threads: ThreadStore):
        self.threads = threads  # its engine, and its lock around SQLite's writes

    def create(self, owner: str, response: dict, input: list[dict], turn_id: str) -> None:
        with self.threads.writing() as conn:
            conn.execute(insert(responses).values(
                id=response["id"], owner=owner, previous_id=response["previous_response_id"], turn_id=turn_id,
                status=response["status"], response=response, input=input, created=time.time()))

    def update(self, response: dict) -> None:
        """The response as it now stands (its output, status and usage)."""
        with self.threads.writing() as conn:
            conn.execute(update(responses).where(responses.c.id == response["id"])
                         .values(status=response["status"], response=response))

    def get(self, response_id: str, owner: str) -> dict | None:
        """{id, previous_id, turn_id, status, response, input}, or None."""
        with self.threads.engine.connect() as conn:
            row = conn.execute(select(responses).where(responses.c.id == response_id,
                                                       responses.c.owner == owner)).first()
        return row._asdict() if row else None

    def chain(self, response_id: str, owner: str, limit: int) -> list[dict]:
        """The responses up to and including this one, oldest first (at most `limit`: the oldest
        are left out, as a long chat's oldest turns are)."""
        found, next_id = [], response_id
        while next_id and len(found) < limit:
            row = self.get(next_id, owner)
            if row is None:
                if not found:
                    raise Refused("response_not_found", f"previous_response_id: no response {response_id!r} "
                                                        "(unknown, deleted, not stored, or not yours)")
                break  # an earlier one was deleted: the conversation starts after it
            found.append(row)
            next_id = row["previous_id"]
        return found[::-1]

    def delete(self, response_id: str, owner: str) -> bool:
        with self.threads.writing() as conn:
            return conn.execute(delete(responses).where(responses.c.id == response_id,
                                                        responses.c.owner == owner)).rowcount > 0
