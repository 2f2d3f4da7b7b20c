"""Reading a request's JSON body into a request model: every problem is a 4xx that names the
field and says what is wrong."""
from __future__ import annotations

import json

from flask import g, request
from pydantic import BaseModel, ValidationError

from ..conversations.inline import InlineMedia
from ..errors import ApiError
from ..services import current


def describe(error: ValidationError) -> str:
    """One readable line per problem: `temperature: Input should be less than or equal to 2`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def json_body(lists: bool = False) -> dict | list:
    """The request's JSON object (or, with `lists`, array), or a 4xx saying why there is none."""
    if not request.mimetype == "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"expected Content-Type: application/json, got {request.mimetype or 'none'}")
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_request_error", f"body is not valid JSON: {exc}")
    if not isinstance(body, (dict, list) if lists else dict):
        wanted = "a JSON object or array" if lists else "a JSON object"
        raise ApiError(400, "invalid_request_error", f"body must be {wanted}, not {type(body).__name__}")
    return body


def parse(model: type[BaseModel], body: dict) -> BaseModel:
    try:
        return model.model_validate(body, context={"settings": current().settings})
    except ValidationError as exc:
        raise ApiError(400, "invalid_request_error", describe(exc))


def inline_media(model: str | None) -> InlineMedia:
    """How the /v1 APIs read the media parts of a request for this model (its user's files, the
    settings, whether the model reads images)."""
    services = current()
    provider, model_id = services.providers.resolve(model)
    return InlineMedia(services.files, g.user, services.settings, f"{provider.name}/{model_id}",
                       "image" in provider.input_modalities(model_id))
