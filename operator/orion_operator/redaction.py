"""Keep credentials out of status, Events, alerts and logs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"

# user:password@ inside any URL-looking text.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@"
)
# password=... in libpq keyword strings and similar key=value text.
_KEYWORD_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('[^']*'|\S+)")


def secrets_of_url(url: str) -> list[str]:
    """The secret parts of a connection URL (its password, raw and decoded)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL passwords, `password=` pairs and every known secret value in `text`."""
    cleaned = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    cleaned = _KEYWORD_PASSWORD.sub(lambda m: f"{m.group(1)}={MASK}", cleaned)
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, MASK)
    return cleaned
