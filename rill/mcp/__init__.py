"""Tools that run: Model Context Protocol servers the operator configures (config.py), reached
through the official `mcp` SDK on an asyncio loop in an OS thread of its own (servers.py)."""
