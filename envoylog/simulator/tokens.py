"""JWTs as Entrez issues them (ES256), signed and checked with the simulator's own key."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from envoylog.jwt import b64url_decode, b64url_encode
from envoylog.simulator.tls import write_private

OWNER_LIFETIME = timedelta(days=365)
INSTALLER_LIFETIME = timedelta(hours=12)
LIFETIMES = {"owner": OWNER_LIFETIME, "installer": INSTALLER_LIFETIME}
ISSUER = "Entrez"
_COORDINATE_BYTES = 32  # P-256: r and s are 32 bytes each in a JWS signature


class TokenError(Exception):
    """The simulated gateway refuses a token; the message says why, never the token."""


@dataclass(frozen=True)
class TokenClaims:
    """What the gateway needs from a verified token."""

    serial: str  # the `aud` claim
    username: str
    enphase_user: str  # owner | installer
    issued_at: datetime
    expires_at: datetime
    jti: str


def _json_part(data: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(data, separators=(",", ":")).encode())


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT, without checking its signature; TokenError if it is not a JWT."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT: it must have three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("not a JWT: a part is not base64url-encoded JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("not a JWT: the header and claims must be JSON objects")
    return header, claims


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key in `path` (PEM), created (readable by the owner only) when the file does not exist."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    return key


class TokenIssuer:
    """Issues and verifies tokens for one signing key; thread-safe."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public).hexdigest()
        self._lock = threading.Lock()
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        # Tokens issued before a restart are not in _issued; revocation reaches them through their `iat`.
        self._revoked_before: int | None = None

    def issue(
        self,
        *,
        serial: str,
        username: str,
        now: datetime,
        enphase_user: str = "owner",
        lifetime: timedelta | None = None,
    ) -> str:
        """A signed token for `serial`, valid from `now` for `lifetime` (by default the role's lifetime)."""
        if enphase_user not in LIFETIMES:
            raise ValueError(f"enphase_user must be 'owner' or 'installer', not {enphase_user!r}")
        issued = int(now.timestamp())
        expires = issued + int((lifetime or LIFETIMES[enphase_user]).total_seconds())
        jti = str(uuid.uuid4())
        header = {"kid": self.kid, "typ": "JWT", "alg": "ES256"}
        claims = {
            "aud": serial,
            "iss": ISSUER,
            "enphaseUser": enphase_user,
            "exp": expires,
            "iat": issued,
            "jti": jti,
            "username": username,
        }
        signing_input = f"{_json_part(header)}.{_json_part(claims)}"
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        with self._lock:
            self._issued.add(jti)
        return f"{signing_input}.{b64url_encode(raw)}"

    def verify(self, token: str, *, serial: str, now: datetime) -> TokenClaims:
        """The claims of a token this gateway accepts now; TokenError otherwise."""
        header, claims = decode_unverified(token)
        if header.get("alg") != "ES256" or header.get("kid") != self.kid:
            raise TokenError("the token was not signed by this gateway's issuer")
        signing_input, _, signature = token.strip().rpartition(".")
        try:
            raw = b64url_decode(signature)
        except ValueError as exc:
            raise TokenError("the token's signature is not base64url") from exc
        if len(raw) != 2 * _COORDINATE_BYTES:
            raise TokenError("the token's signature has the wrong length")
        der = encode_dss_signature(
            int.from_bytes(raw[:_COORDINATE_BYTES], "big"), int.from_bytes(raw[_COORDINATE_BYTES:], "big")
        )
        try:
            self._key.public_key().verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise TokenError("the token's signature does not verify") from exc
        parsed = self._parse(claims)
        if parsed.serial != serial:
            raise TokenError("the token is for another gateway")
        self.check_current(parsed, now)
        return parsed

    def check_current(self, claims: TokenClaims, now: datetime) -> None:
        """TokenError when verified claims have since expired or been revoked."""
        if now >= claims.expires_at:
            raise TokenError("the token has expired")
        if self.is_revoked(claims):
            raise TokenError("the token has been revoked")

    def is_revoked(self, claims: TokenClaims) -> bool:
        """Whether `revoke_all` has revoked the token with these claims."""
        with self._lock:
            if claims.jti in self._revoked:
                return True
            if claims.jti in self._issued or self._revoked_before is None:
                return False
            return claims.issued_at.timestamp() <= self._revoked_before

    def revoke_all(self, now: datetime) -> None:
        """Revoke every token issued so far (also those issued before a restart, by their `iat`)."""
        with self._lock:
            self._revoked |= self._issued
            self._revoked_before = max(self._revoked_before or 0, int(now.timestamp()))

    @staticmethod
    def _parse(claims: dict[str, Any]) -> TokenClaims:
        try:
            return TokenClaims(
                serial=str(claims["aud"]),
                username=str(claims["username"]),
                enphase_user=str(claims["enphaseUser"]),
                issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                jti=str(claims["jti"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TokenError("the token lacks a claim the gateway needs") from exc
