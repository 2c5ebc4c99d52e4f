"""Hostile peers and broken surroundings: each defect of the adversarial run, kept fixed by a test.

The numbers in the test names are those of the issue's list. The peer is the simulator where it can play the
part, and `hostile.HostilePeer` where only a deliberately evil server can.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Site
from hostile import INFO_FW8, HostilePeer, Route, endless, trickle

from envoylog.collect import collect_all
from envoylog.config import GatewaySettings, Settings, load_settings
from envoylog.errors import ConfigError, GatewayError


def settings_for(db_url: str, host: str, **gateway: object) -> Settings:
    return Settings(
        db_url=db_url,
        timezone="Europe/Amsterdam",
        enlighten_url="https://127.0.0.1:9",
        entrez_url="https://127.0.0.1:9",
        gateways=(GatewaySettings(name="home", host=host, **gateway),),  # type: ignore[arg-type]
    )


def impostor_routes() -> dict[str, Route]:
    """A peer that answers as a firmware 8 gateway and hands out sessions to whoever asks."""
    return {
        "/info": Route(body=INFO_FW8, content_type="text/xml"),
        "/auth/check_jwt": Route(
            body=b"<html>ok</html>", headers=[("Set-Cookie", "sessionId=stolen; Path=/")]
        ),
        "/production.json": Route(body=b"{}"),
    }


def credentials_seen(peer: HostilePeer) -> list[str]:
    """Every credential the peer was sent, over TLS or not."""
    return [
        f"{'https' if seen.tls else 'http'} {seen.path}: {name}"
        for seen in peer.seen
        for name in ("authorization", "cookie")
        if name in seen.headers
    ]


# --- 1. fingerprint bypass -------------------------------------------------------------------------------


def test_1_a_pinned_gateway_is_never_spoken_to_over_http(site: Site, tmp_path: Path) -> None:
    pinned = site.settings(fingerprint=site.sim.gateway_cert_sha256)
    assert site.collect(pinned).outcome == "ok"  # the real gateway, pinned: fine
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor") as impostor:
        # The impostor has the gateway's address; its certificate is not the pinned one.
        run = site.collect(
            site.settings(host=f"127.0.0.1:{impostor.port}", fingerprint=site.sim.gateway_cert_sha256)
        )
    assert run.outcome == "failed" and run.error is not None and run.error.status == 4
    assert "is not the configured fingerprint" in str(run.error)
    assert credentials_seen(impostor) == []
    assert not [seen for seen in impostor.seen if not seen.tls]  # no fallback to plain HTTP at all


def test_1_a_gateway_known_to_need_a_token_is_never_spoken_to_over_http(site: Site, tmp_path: Path) -> None:
    assert site.collect().outcome == "ok"  # now the database knows it runs firmware 8
    # In its place, a peer whose HTTPS fails and whose plain HTTP says it is that gateway.
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor", tls=False) as impostor:
        run = site.collect(site.settings(host=f"127.0.0.1:{impostor.port}"))
    assert run.outcome == "failed"
    assert credentials_seen(impostor) == []
    assert not [seen for seen in impostor.seen if not seen.tls]


def test_1_a_new_gateway_that_needs_a_token_over_plain_http_gets_no_token(
    db_url: str, tmp_path: Path
) -> None:
    with HostilePeer(impostor_routes(), state_dir=tmp_path / "impostor", tls=False) as impostor:
        settings = settings_for(db_url, f"127.0.0.1:{impostor.port}", token="eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
        (run,) = collect_all(settings)
    assert run.outcome == "failed" and "sends tokens over HTTPS only" in str(run.error)
    assert credentials_seen(impostor) == []


def test_1_the_fingerprint_has_a_variable(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOYLOG_FINGERPRINT", "AB:" * 31 + "AB ")
    (gateway,) = load_settings().gateways
    assert gateway.fingerprint == "ab" * 32
    assert gateway.base_urls[0].startswith("https://")


# --- 5. no response size limit -----------------------------------------------------------------------


@pytest.mark.parametrize("body", ["endless", "declared"])
def test_5_an_endless_or_huge_answer_is_refused_in_bounded_time(tmp_path: Path, body: str) -> None:
    huge = Route(body=endless()) if body == "endless" else Route(body=b"[" * (8 * 1024 * 1024))
    with HostilePeer({"/production.json": huge, "/info": Route(body=INFO_FW8, content_type="text/xml")},
                     state_dir=tmp_path / "peer") as peer:  # fmt: skip
        from envoylog.gateway.client import AnswerTooLarge, GatewayClient

        client = GatewayClient(f"https://127.0.0.1:{peer.port}", deadline=time.monotonic() + 30)
        started = time.monotonic()
        with pytest.raises(AnswerTooLarge, match="answered more than 4 MB"):
            client.get("/production.json")
        assert time.monotonic() - started < 10
        client.close()


# --- 8. the deadline holds while bytes trickle -------------------------------------------------------


@pytest.mark.parametrize("where", ["body", "headers"])
def test_8_a_trickling_gateway_cannot_hold_a_run_past_its_deadline(
    db_url: str, tmp_path: Path, where: str
) -> None:
    route = (
        Route(body=trickle(INFO_FW8, 0.5), content_type="text/xml")
        if where == "body"
        else Route(body=INFO_FW8, content_type="text/xml", header_delay_s=0.5, headers=[("X-Pad", "x")] * 20)
    )
    with HostilePeer({"/info": route}, state_dir=tmp_path / "peer", plain=False) as peer:
        started = time.monotonic()
        (run,) = collect_all(settings_for(db_url, f"https://127.0.0.1:{peer.port}"), deadline_s=3)
        took = time.monotonic() - started
    assert run.outcome == "failed" and isinstance(run.error, GatewayError)
    assert "did not answer within" in str(run.error)
    assert took < 5, took


# --- 12. cloud URLs are https ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ENVOYLOG_ENLIGHTEN_URL", "ENVOYLOG_ENTREZ_URL"])
def test_12_a_plain_http_cloud_url_is_refused(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://enlighten.example")
    with pytest.raises(ConfigError, match="expected an https:// URL"):
        load_settings()
