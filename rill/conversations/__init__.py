"""Conversations on the server: threads as trees of messages made of parts."""
