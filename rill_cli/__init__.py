"""`rill`: the terminal client (ask, chat) and the server's own verbs (serve, token)."""
