"""Streamed turns for every route that sends them (SSE, the WebSocket, the OpenAI-compatible
route): start or find one, and relay its Redis Stream as events."""
