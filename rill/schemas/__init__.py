"""Request models, one module per protocol (pydantic; no web code: api/requests.py reads them)."""
