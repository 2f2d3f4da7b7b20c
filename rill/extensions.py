"""Extensions created unbound and bound to the app in create_app()."""
from flask import request
from flask_limiter import Limiter
from flask_socketio import SocketIO

from . import metrics
from .auth import rate_limit_key
from .services import current

socketio = SocketIO()
limiter = Limiter(key_func=rate_limit_key, headers_enabled=True,
                  on_breach=lambda limit: metrics.RATE_LIMITED.labels(metrics.api_of(request.path)).inc())

CHAT_SCOPE = "chat"  # one budget for every route that starts a turn, Socket.IO included
chat_limit = limiter.shared_limit(lambda: current().settings.rate_limit, scope=CHAT_SCOPE)
