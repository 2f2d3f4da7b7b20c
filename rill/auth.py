"""Who is asking: JWT bearer tokens (PyJWT), off unless a key is configured.

With auth on, protected routes and the Socket.IO connect need a valid token; `sub` is the user.
The algorithm is pinned to the configured key's (HS256 for a secret, RS256 for a public key),
so `alg: none` and HS/RS confusion are refused. With auth off everyone is one anonymous user.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import click
import jwt
from flask import Blueprint, request

from .config import comma_list
from .errors import ApiError
from .services import current

ANONYMOUS = "anonymous"
MAX_USER_CHARS = 256  # a `sub` longer than this is not an identity (it would key limits and sessions)
TIME_CLAIMS = ("exp", "nbf", "iat")


def read_key(value: str) -> str:
    """A PEM key given inline or as a path to a file."""
    return value if "-----BEGIN" in value else Path(value).read_text()


class Auth:
    def __init__(self, settings):
        self.settings = settings
        self.algorithm = "RS256" if settings.jwt_public_key else "HS256" if settings.jwt_secret else None
        if self.algorithm == "RS256":
            self.verify_key = read_key(settings.jwt_public_key)
            self.sign_key = read_key(settings.jwt_private_key) if settings.jwt_private_key else None
        else:
            self.verify_key = self.sign_key = settings.jwt_secret or None

    @property
    def enabled(self) -> bool:
        return self.algorithm is not None

    def is_admin(self, user: str) -> bool:
        """With auth off, whoever reaches the server; with it on, the users in RILL_ADMIN_USERS."""
        return not self.enabled or user in comma_list(self.settings.admin_users)

    def verify(self, token: str) -> str:
        """The token's user (`sub`), or a 401 that says what is wrong with it."""
        s = self.settings
        try:
            claims = jwt.decode(token, self.verify_key, algorithms=[self.algorithm],
                                audience=s.jwt_audience or None, issuer=s.jwt_issuer or None,
                                leeway=s.jwt_leeway_seconds, options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired: get a new one")
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not valid yet (nbf or iat is in the future)")
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience (aud) is not accepted here")
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer (iss) is not accepted here")
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token has no {exc.claim!r} claim")
        except jwt.InvalidAlgorithmError:
            raise unauthorized(f"token algorithm not accepted: this server expects {self.algorithm}")
        except jwt.InvalidSignatureError:
            raise unauthorized("token signature is invalid")
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"token is malformed: {exc}")
        for name in TIME_CLAIMS:  # PyJWT would take "1999999999", a string, as a time
            value = claims.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise unauthorized(f"token claim {name!r} must be a number (seconds since the epoch)")
        user = claims["sub"]
        if not isinstance(user, str) or not user.strip() or len(user) > MAX_USER_CHARS:
            raise unauthorized(f"token 'sub' must be a non-empty string of at most {MAX_USER_CHARS} characters")
        return user

    def mint(self, user: str, ttl_seconds: int) -> str:
        if not self.sign_key:
            raise click.UsageError("set RILL_JWT_SECRET (or RILL_JWT_PRIVATE_KEY for RS256) to mint tokens")
        now = int(time.time())
        claims = {"sub": user, "iat": now, "nbf": now, "exp": now + ttl_seconds}
        if self.settings.jwt_audience:
            claims["aud"] = self.settings.jwt_audience
        if self.settings.jwt_issuer:
            claims["iss"] = self.settings.jwt_issuer
        return jwt.encode(claims, self.sign_key, algorithm=self.algorithm)

    def user_for_request(self) -> str:
        """The caller of this HTTP request: Authorization: Bearer, or x-api-key on /v1."""
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token and request.path.startswith("/v1/"):
            token = request.headers.get("x-api-key", "").strip()
        if not token:
            raise unauthorized("missing token: send `Authorization: Bearer <token>`")
        return self.verify(token)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "authentication_error", message)


def current_auth() -> Auth:
    return current().auth


def limit_key(user: str) -> str:
    """Limits count per user, or per address for anonymous callers."""
    return f"user:{user}" if user != ANONYMOUS else f"addr:{request.remote_addr}"


def rate_limit_key() -> str:
    try:
        user = current_auth().user_for_request()
    except ApiError:
        user = ANONYMOUS  # the route refuses it anyway; count it against the address
    return limit_key(user)


def parse_ttl(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", value.strip())
    if not match:
        raise click.BadParameter(f"{value!r}: use a number with s, m, h or d, e.g. 30m or 1h")
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


cli = Blueprint("rill", __name__, cli_group="rill")


@cli.cli.command("token")
@click.argument("user")
@click.option("--ttl", default="1h", show_default=True, help="lifetime: 30m, 12h, 7d ...")
def token_command(user: str, ttl: str) -> None:
    """Print a signed token for USER."""
    click.echo(current_auth().mint(user, parse_ttl(ttl)))
