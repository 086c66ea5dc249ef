"""The bearer header of a test request, from the session's `token` fixture (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable


def bearer(token: Callable[..., str], tenant: str = "acme", role: str = "user") -> dict[str, str]:
    """The Authorization header of a dev token for `tenant` with `role`."""
    return {"Authorization": f"Bearer {token(tenant, role)}"}
