"""base64url as JSON Web Tokens use it: no padding on the wire, padding restored to decode."""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> str:
    """`data` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded (or padded) base64url text; binascii.Error or ValueError if it is not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
