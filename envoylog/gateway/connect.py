"""Finding a gateway: HTTPS first, /info read, the serial checked, plain HTTP refused where a token is due."""

from __future__ import annotations

from envoylog.config import GatewaySettings
from envoylog.errors import ConfigError, GatewayError
from envoylog.gateway.client import AnswerTooLarge, CertificateMismatch, GatewayClient, GatewayUnreachable
from envoylog.readings.model import GatewayInfo
from envoylog.readings.parse import parse_info

MIN_FIRMWARE = (3, 9)  # older firmware serves HTML pages only


class UnsupportedGateway(GatewayError):
    """The gateway's firmware has no machine-readable data."""


def connect(
    gateway: GatewaySettings, deadline: float, *, https_only: bool = False, kept: GatewayClient | None = None
) -> tuple[GatewayClient, GatewayInfo]:
    """Find the gateway (HTTPS, then HTTP for a bare host) and read /info; check the serial if one is set.

    A gateway that needs a token (known from earlier runs, or saying so now) is never talked to over plain
    HTTP: an impostor answering there would be handed the session cookie and the owner's token. `kept`: the
    client of an earlier run (`collect --every`), whose connection is used again for its URL (and closed if
    another is the one returned).
    """
    found: GatewayClient | None = None
    try:
        found, info = _connect(gateway, deadline, https_only, kept)
        return found, info
    finally:
        if kept is not None and kept is not found:
            kept.close()


def _connect(
    gateway: GatewaySettings, deadline: float, https_only: bool, kept: GatewayClient | None
) -> tuple[GatewayClient, GatewayInfo]:
    failures: list[str] = []
    requests_before = 0
    urls = [url for url in gateway.base_urls if url.startswith("https://") or not https_only]
    if not urls:
        raise ConfigError(
            f"gateway {gateway.name} needs a token, which envoylog sends over HTTPS only: "
            f"give its host as https://... instead of {gateway.host}"
        )
    for base_url in urls:
        if kept is not None and kept.base_url == base_url:
            client = kept
            client.renew(deadline)
        else:
            client = GatewayClient(base_url, deadline=deadline, fingerprint=gateway.fingerprint)
        client.requests_made = requests_before
        try:
            answer = client.get("/info")
        except CertificateMismatch:
            client.close()
            raise
        except (GatewayUnreachable, AnswerTooLarge) as exc:
            failures.append(str(exc))
            requests_before = client.requests_made
            client.close()
            continue
        if answer.status != 200:
            client.close()
            failures.append(f"{base_url}/info answered HTTP {answer.status}")
            requests_before = client.requests_made
            continue
        info = parse_info(answer.body)
        if info.needs_token and base_url.startswith("http://"):
            client.close()
            raise GatewayError(
                f"{base_url} says it is gateway {info.serial} with firmware {info.firmware}, which needs a "
                "token, but answers over plain HTTP: envoylog sends tokens over HTTPS only"
            )
        if info.firmware_version < MIN_FIRMWARE:
            client.close()
            raise UnsupportedGateway(
                f"gateway {info.serial} runs firmware {info.firmware}, which serves only HTML pages: "
                "envoylog needs firmware 3.9 or later"
            )
        if gateway.serial and gateway.serial != info.serial:
            client.close()
            raise ConfigError(
                f"gateway {gateway.name} at {base_url} has serial {info.serial}, "
                f"not the configured {gateway.serial}"
            )
        return client, info
    raise GatewayUnreachable("; ".join(failures))
