"""The `auth` commands: get a token now, store a pasted one, forget them."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import Engine

from envoylog.collect.auth_store import DatabaseAuthStore, store_token
from envoylog.collect.run import DEFAULT_DEADLINE_S
from envoylog.config import GatewaySettings, Settings
from envoylog.db import credentials
from envoylog.db.gateways import configured_gateway, ensure_gateway, find_gateway_by_id, list_gateways
from envoylog.errors import ConfigError
from envoylog.gateway.auth import fetch_and_store_token
from envoylog.gateway.cloud import CloudClient
from envoylog.gateway.connect import connect
from envoylog.gateway.tokens import TokenInfo, decode_token


def choose_gateways(settings: Settings, name: str | None) -> tuple[GatewaySettings, ...]:
    """The configured gateway called `name`, or all of them."""
    if name is None:
        return settings.gateways
    chosen = tuple(g for g in settings.gateways if g.name == name)
    if not chosen:
        known = ", ".join(g.name for g in settings.gateways)
        raise ConfigError(f"no gateway named {name!r} is configured (configured: {known})")
    return chosen


def choose_one(settings: Settings, name: str | None) -> GatewaySettings:
    """Exactly one configured gateway: the one named, or the only one."""
    gateways = choose_gateways(settings, name)
    if len(gateways) > 1:
        names = ", ".join(g.name for g in gateways)
        raise ConfigError(f"several gateways are configured ({names}): choose one with --gateway")
    return gateways[0]


def _serial_of(
    engine: Engine, gateway: GatewaySettings, now: datetime, token: TokenInfo | None = None
) -> int:
    """The stored id of the gateway, asking the gateway itself for its serial when nothing else tells."""
    serial = gateway.serial
    if token is not None and token.serial:
        if serial and serial != token.serial:
            raise ConfigError(f"the token is for gateway {token.serial}, but {gateway.name} is {serial}")
        serial = token.serial
    if serial is None:
        with engine.connect() as conn:
            known = configured_gateway(conn, name=gateway.name)
        if known is not None:
            serial = known.serial
    if serial is None:
        client, info = connect(gateway, time.monotonic() + DEFAULT_DEADLINE_S)
        client.close()
        serial = info.serial
    if token is not None and token.serial and token.serial != serial:
        raise ConfigError(f"the token is for gateway {token.serial}, not {serial}")
    with engine.begin() as conn:
        return ensure_gateway(conn, serial, gateway.name, now)


def set_token(engine: Engine, gateway: GatewaySettings, raw: str, now: datetime) -> tuple[str, TokenInfo]:
    """Check and store a token the user pasted; return the gateway serial and the token."""
    token = decode_token(raw)
    if token.expired(now):
        raise ConfigError(f"the token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC: get a new one")
    gateway_id = _serial_of(engine, gateway, now, token)
    with engine.begin() as conn:
        store_token(conn, gateway_id, token, "manual", now)
        credentials.delete_auth(conn, gateway_id, kinds=("session",))
        serial = str(find_gateway_by_id(conn, gateway_id).serial)
    return serial, token


def login(
    engine: Engine,
    settings: Settings,
    gateway: GatewaySettings,
    now: datetime,
    *,
    cloud_verify: str | bool = True,
) -> tuple[str, TokenInfo]:
    """Get a new token from the cloud now, whatever the back-off says."""
    if not (gateway.username and gateway.password):
        raise ConfigError(
            f"no Enphase credentials for gateway {gateway.name}: set ENVOYLOG_USERNAME and ENVOYLOG_PASSWORD"
        )
    gateway_id = _serial_of(engine, gateway, now)
    with engine.connect() as conn:
        serial = str(find_gateway_by_id(conn, gateway_id).serial)
    cloud = CloudClient(settings.enlighten_url, settings.entrez_url, verify=cloud_verify)
    token = fetch_and_store_token(DatabaseAuthStore(engine, gateway_id), serial, gateway, cloud, now)
    return serial, token


def logout(engine: Engine, gateways: tuple[GatewaySettings, ...], everything: bool) -> int:
    """Forget stored tokens and sessions; return how many were deleted."""
    deleted = 0
    with engine.begin() as conn:
        names = {g.name for g in gateways}
        for row in list_gateways(conn):
            if everything or row.name in names:
                deleted += credentials.delete_auth(conn, row.id)
    return deleted


def describe_token(serial: str, token: TokenInfo, now: datetime) -> str:
    """One line about a stored token, without the token."""
    days = (token.expires_at - now).total_seconds() / 86400
    return (
        f"stored an {token.enphase_user} token for gateway {serial}, "
        f"valid until {token.expires_at:%Y-%m-%d %H:%M} UTC ({days:.1f} days)"
    )
