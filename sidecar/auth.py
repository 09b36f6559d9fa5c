"""Access control: the tokens a caller must present when any are configured.

Off when no tokens are configured (the default: on 127.0.0.1 only the pod can call). A token
is read from ``x-api-key`` or ``authorization: Bearer ...`` (HTTP) and from the
``authorization`` metadata (gRPC), and compared with every configured token in constant time,
so neither the token nor how much of it matched shows in the response time.
"""

from __future__ import annotations

import hmac


class TokenCheck:
    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def allows(self, presented: str | None) -> bool:
        if not self._tokens:
            return True
        if not presented:
            return False
        if presented[:7].lower() == "bearer ":
            presented = presented[7:]
        candidate = presented.strip().encode()
        matched = False
        for token in self._tokens:  # no early exit: every token is compared every time
            matched |= hmac.compare_digest(candidate, token)
        return matched
