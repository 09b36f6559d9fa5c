"""TLS: both listeners served over TLS, and an upstream reached over HTTPS signed by a private CA
(which the sidecar refuses when that CA is not configured). Certificates are made per test run
with the openssl command line."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2_grpc as spb_grpc

pytestmark = pytest.mark.integration
BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "tls"}]}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
             cwd=d)  # fmt: skip
    return {
        k: str(d / f)
        for k, f in {"ca": "ca.pem", "cert": "server.pem", "key": "server.key"}.items()
    }


def test_listeners_and_upstream_over_tls(
    pki: dict[str, str], start_upstream: Callable[..., Any], sidecar_factory: Callable[..., Any]
) -> None:
    secure = start_upstream(tls=(pki["cert"], pki["key"], pki["ca"]))
    assert secure.base_url.startswith("https://")
    config = {
        "server": {
            "http": "127.0.0.1:0",
            "grpc": "127.0.0.1:0",
            "tls": {"cert_file": pki["cert"], "key_file": pki["key"]},
        },
        "backends": {
            "trusted": {
                "kind": "openai",
                "base_url": f"{secure.base_url}/v1",
                "ca_file": pki["ca"],
            },
            "untrusted": {"kind": "openai", "base_url": f"{secure.base_url}/v1"},
        },
        "chains": {"default": [{"backend": "trusted"}], "strict": [{"backend": "untrusted"}]},
    }
    sidecar = sidecar_factory(config)
    https_url = sidecar.http_url.replace("http://", "https://")
    trust = ssl.create_default_context(cafile=pki["ca"])
    with httpx.Client(base_url=https_url, verify=trust) as http:
        answer = http.post("/v1/messages", json=BODY)
        assert answer.status_code == 200
        assert answer.json()["content"][0]["text"] == "echo: tls"
        # The system's CAs do not know the private CA: the upstream is refused, not trusted.
        refused = http.post("/v1/messages", json=BODY, headers={"x-anyllm-chain": "strict"})
        assert refused.status_code >= 500
        assert len(secure.control.log()) == 1
    with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS listener
        httpx.post(f"{sidecar.http_url}/v1/messages", json=BODY, timeout=2)

    credentials = grpc.ssl_channel_credentials(root_certificates=Path(pki["ca"]).read_bytes())
    with grpc.secure_channel(sidecar.grpc_target, credentials) as channel:
        content = [pb.ContentBlock(text=pb.TextBlock(text="tls"))]
        message = spb_grpc.MessagesServiceStub(channel).CreateMessage(
            spb.CreateMessageRequest(
                model="m",
                max_tokens=5,
                messages=[pb.InputMessage(role=pb.ROLE_USER, content=content)],
            ),
            timeout=10,
        )
    assert message.content[0].text.text == "echo: tls"
