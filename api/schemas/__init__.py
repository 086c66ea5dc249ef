"""The request and response bodies of the API's own routes, one module per resource (the
OpenAI-compatible routes keep theirs in api/openai/protocol.py)."""
