"""HTTPS / WSS when configured: a self-signed pair made on first run, reused after."""

from __future__ import annotations

import dataclasses
import ssl

import aiohttp

from signalling.client import Client
from web.app import Huishang
from web.config import HuishangConfig, TlsConfig, TlsMode


async def test_self_signed_tls_serves_https_and_wss(demo_config: HuishangConfig) -> None:
    config = dataclasses.replace(demo_config, tls=TlsConfig(mode=TlsMode.SELF_SIGNED))
    app = await Huishang.open(config=config)
    cert = config.data_dir / "tls" / "huishang.crt"
    try:
        assert app.web_url.startswith("https://")
        assert app.signalling_url.startswith("wss://")
        assert cert.exists()
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{app.web_url}/api/info", ssl=trust) as resp:
                info = await resp.json()
            assert info["signalling"] == app.signalling_url
            # Without trusting the certificate, the client refuses it.
            try:
                async with http.get(f"{app.web_url}/healthz") as resp:
                    raise AssertionError("an untrusted self-signed certificate was accepted")
            except aiohttp.ClientConnectorCertificateError:
                pass
        token = app.token_for("tianhe.zhuji")  # type: ignore[arg-type]
        assert token is not None
        client = await Client.connect(app.signalling_url, token, ssl_context=trust)
        assert client.site["name"] == "珠吉街"
        await client.close()
    finally:
        await app.close()
    first = cert.read_bytes()
    app = await Huishang.open(config=config)  # the second start reuses the pair
    await app.close()
    assert cert.read_bytes() == first
