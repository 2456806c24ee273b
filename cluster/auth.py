"""Ray token authentication for clients: find the token, send it, explain a rejection.

Ray 2.60 clusters started with ``RAY_AUTH_MODE=token`` refuse every request without the
cluster's token. A client finds it, in this order, in ``RAY_AUTH_TOKEN``, in the file named
by ``RAY_AUTH_TOKEN_PATH``, or in ``~/.ray/auth_token`` (what ``ray get-auth-token
--generate`` writes, and what a first local ``ray.init()`` creates). ``RAY_AUTH_MODE=disabled``
sends nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainables.errors import TunefactoryError


class ClusterError(TunefactoryError):
    """A cluster cannot be reached, rejects our token, or refuses a request."""


@dataclass(frozen=True)
class Token:
    """A token and where it came from (for messages; the value is never printed)."""

    value: str
    source: str


def find_token() -> Token | None:
    """The Ray auth token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.

    Raises:
        ClusterError: ``RAY_AUTH_TOKEN_PATH`` names a file that cannot be read or is empty.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    value = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if value:
        return Token(value, "RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        p = Path(path).expanduser()
        try:
            value = p.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: cannot read the token file ({e.strerror})") from None
        if not value:
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={path}: the token file is empty")
        return Token(value, f"RAY_AUTH_TOKEN_PATH={path}")
    p = Path.home() / ".ray" / "auth_token"
    if p.is_file():
        value = p.read_text(encoding="utf-8").strip()
        if value:
            return Token(value, str(p))
    return None


def auth_headers(token: Token | None) -> dict[str, str]:
    """HTTP headers for the Ray dashboard / Jobs API."""
    return {"Authorization": f"Bearer {token.value}"} if token else {}


def rejection_message(address: str, status: int | None, token: Token | None) -> str:
    """One line saying the cluster refused our token (or that we sent none).

    ``status`` is the HTTP status for the dashboard / Jobs API, None for Ray's gRPC ports.
    """
    if status == 401 or token is None:
        return (f"{address}: the cluster requires token authentication and no token was sent; set RAY_AUTH_TOKEN "
                "or RAY_AUTH_TOKEN_PATH to the cluster's token (`ray get-auth-token` on its head node)")
    how = f" (HTTP {status})" if status else ""
    return (f"{address}: the cluster rejected the authentication token from {token.source}{how}; "
            "use the cluster's own token (`ray get-auth-token` on its head node)")


def enable_token_auth_for_address() -> None:
    """Turn token auth on for ``ray.init(address=...)`` when the user gave a token explicitly.

    Ray enables it by itself only for ``address="auto"`` with a token file; an explicit
    ``HOST:PORT`` plus ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH`` should just work too.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ["RAY_AUTH_MODE"] = "token"
