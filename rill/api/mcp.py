"""GET /api/mcp: the MCP servers the operator configured (RILL_MCP_CONFIG) and their tools, for a
chat's `mcp_servers` (a server's name, or a tool's `id` for that tool alone) and the UI's picker.
Listing starts a server that has not started yet."""
from __future__ import annotations

from flask import Blueprint, jsonify

from ..mcp.config import HttpServer
from ..services import current

bp = Blueprint("mcp", __name__, url_prefix="/api/mcp")


@bp.get("")
def index():
    mcp = current().mcp
    names = list(mcp.config)
    tools, failed = mcp.tools(names) if names else ([], {})
    return jsonify({"servers": [
        {"name": name, "transport": "http" if isinstance(server, HttpServer) else "stdio",
         "ask_first": server.ask_first,
         **({"error": failed[name]} if name in failed else {}),
         "tools": [{"name": t.qualified, "id": f"{t.server}/{t.name}", "description": t.description,
                    "parameters": t.schema}
                   for t in tools if t.server == name]}
        for name, server in mcp.config.items()]})
