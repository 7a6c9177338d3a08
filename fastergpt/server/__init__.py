"""`fastergpt serve`: an OpenAI-compatible HTTP server over the continuous batch."""
