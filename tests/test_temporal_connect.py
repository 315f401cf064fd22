"""Temporal for real (issue 17, "Operating it"): mTLS files, a private CA, a Temporal Cloud API key and the
switch that leaves search-attribute registration to the operator, from the settings to the connect call."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import TLSConfig

from orchestrator.config.settings import Settings
from orchestrator.temporal import client as temporal_client
from orchestrator.temporal.client import TemporalSettingsError, connect, connect_options
from orchestrator.temporal.names import SEARCH_ATTRIBUTES
from tests.conftest import Stack
from tests.test_outages import closed_port


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def fake_connect(target_host: str, **kwargs: Any) -> str:
        calls.append({"target_host": target_host, **kwargs})
        return "client"
    monkeypatch.setattr(Client, "connect", fake_connect)
    return calls


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {"cert": b"-----BEGIN CERTIFICATE-----\nclient\n", "key": b"-----BEGIN PRIVATE KEY-----\nk\n",
             "ca": b"-----BEGIN CERTIFICATE-----\nca\n", "apikey": b"  eyJhbGciOi.cloud-key  \n"}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


async def test_mtls_files_reach_the_connect_call(tmp_path: Path, captured: list[dict[str, Any]]) -> None:
    f = _files(tmp_path)
    settings = Settings(temporal_address="temporal.internal:7233", temporal_namespace="prod",
                        temporal_tls_cert=str(f["cert"]), temporal_tls_key=str(f["key"]),
                        temporal_tls_ca=str(f["ca"]), temporal_tls_server_name="frontend.temporal.svc")
    assert await connect(settings) == "client"
    (call,) = captured
    assert (call["target_host"], call["namespace"], call["api_key"]) == ("temporal.internal:7233", "prod", None)
    tls = call["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == f["cert"].read_bytes() and tls.client_private_key == f["key"].read_bytes()
    assert tls.server_root_ca_cert == f["ca"].read_bytes() and tls.domain == "frontend.temporal.svc"


async def test_a_temporal_cloud_api_key_turns_tls_on(tmp_path: Path, captured: list[dict[str, Any]]) -> None:
    f = _files(tmp_path)
    await connect(Settings(temporal_address="ns.acct.tmprl.cloud:7233", temporal_api_key_file=str(f["apikey"])))
    assert captured[-1]["api_key"] == "eyJhbGciOi.cloud-key" and captured[-1]["tls"] is True
    # with a private CA as well: the CA is used, the key is sent
    await connect(Settings(temporal_api_key_file=str(f["apikey"]), temporal_tls_ca=str(f["ca"])))
    assert isinstance(captured[-1]["tls"], TLSConfig) and captured[-1]["api_key"] == "eyJhbGciOi.cloud-key"


def test_plain_and_system_roots_tls_are_unchanged() -> None:
    assert connect_options(Settings()) == {"tls": False, "api_key": None}
    assert connect_options(Settings(temporal_tls=True)) == {"tls": True, "api_key": None}
    ca_only = connect_options(Settings(temporal_tls_server_name="t.example"))["tls"]
    assert isinstance(ca_only, TLSConfig) and ca_only.client_cert is None and ca_only.server_root_ca_cert is None


def test_bad_temporal_tls_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"):
        Settings(temporal_tls_cert="/etc/t/tls.crt")
    with pytest.raises(ValidationError, match="go together"):
        Settings(temporal_tls_key="/etc/t/tls.key")
    missing = tmp_path / "absent.crt"
    with pytest.raises(TemporalSettingsError, match=f"TEMPORAL_TLS_CA={missing}: No such file"):
        connect_options(Settings(temporal_tls_ca=str(missing)))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(TemporalSettingsError, match=r"TEMPORAL_API_KEY_FILE=.* is empty"):
        connect_options(Settings(temporal_api_key_file=str(empty)))
    # terminal: the start-up wait for Temporal does not retry what no wait can fix
    from orchestrator.startup import temporal_retryable
    assert not temporal_retryable(TemporalSettingsError("x"))


def test_the_names_an_operator_registers() -> None:
    assert temporal_client.search_attributes_to_register() == [f"{k.name}: Keyword" for k in SEARCH_ATTRIBUTES]


async def test_migrate_without_registration_never_calls_temporal(stack: Stack, tmp_path: Path) -> None:
    """TEMPORAL_REGISTER_SEARCH_ATTRIBUTES=false: `nango migrate` migrates and names the attributes to register,
    with Temporal unreachable (the operator registers them where the operator API is not offered)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "ENCRYPTION_KEY"))}
    env |= {"DATABASE_URL": stack.settings.database_url.get_secret_value(),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{closed_port()}", "TEMPORAL_REGISTER_SEARCH_ATTRIBUTES": "false"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "migrate", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "migrations applied" in text
    assert "not registered (TEMPORAL_REGISTER_SEARCH_ATTRIBUTES=false)" in text
    assert all(f"{k.name}: Keyword" in text for k in SEARCH_ATTRIBUTES), text
