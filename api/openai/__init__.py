"""The OpenAI-compatible API (docs/api.md): its router, its protocol (request bodies), its
responses and streamed chunks, and its error shape."""
