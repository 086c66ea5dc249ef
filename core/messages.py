"""A message of a conversation as the SLM reads it: what the API, the workflows and the SLM
activity pass between them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ChatMessage:
    role: str
    content: str
