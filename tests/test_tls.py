"""gRPC over TLS: `make serve GRPC_TLS_CERT=... GRPC_TLS_KEY=...` with a CA and
a server certificate made here at run time; a client with --ssl and the CA
gets answers, a plaintext client is refused."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import string
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lifecycle import DATATYPES, Launcher, small_repository
from triton_helpers import wait_until

from clients.common import Tls, connect, make_inputs
from runtime.paths import REPO_ROOT
from runtime.server import free_port


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_ca_and_server_cert(folder) -> dict[str, str]:
    """A self-signed CA, a localhost server certificate and a client
    certificate it signed (PEM files: ca, cert, key, client_cert, client_key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(_name("a client"))
        .issuer_name(ca.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server-key.pem",
        "client_cert": folder / "client.pem",
        "client_key": folder / "client-key.pem",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["client_cert"].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, files["key"])
    _write_key(client_key, files["client_key"])
    return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    pem = make_ca_and_server_cert(base)
    repo = small_repository(base / "repo", DATATYPES)
    launcher = Launcher(repo, env={"GRPC_TLS_CERT": pem["cert"], "GRPC_TLS_KEY": pem["key"], "ADMIN_KEY": "tls-test-admin-key-0123"}, args=["--no-watchdog"])
    launcher.wait_for("Ctrl-C stops the server")
    launcher.pem = pem
    yield launcher
    launcher.stop()


def test_grpc_over_tls_answers_a_client_with_the_ca(tls_server):
    assert f"localhost:{tls_server.grpc_port} (TLS)" in tls_server.output
    module, client = connect(tls_server.grpc_url, "grpc", tls=Tls(root_certificates=tls_server.pem["ca"]))
    x = np.arange(3, dtype=np.float32)[None]
    np.testing.assert_array_equal(client.infer("identity", make_inputs(module, {"x": x})).as_numpy("y"), x)
    client.close()


def test_client_command_line_takes_ssl_and_root_certificates(tls_server):
    url = f"localhost:{tls_server.grpc_port}"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "clients" / "datatypes_client.py"), "--protocol", "grpc", "--url", url, "--ssl", "--root-certificates", tls_server.pem["ca"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    plain = subprocess.run([sys.executable, str(REPO_ROOT / "clients" / "datatypes_client.py"), "--protocol", "grpc", "--url", url], capture_output=True, text=True, timeout=120)
    assert plain.returncode != 0


def test_plaintext_and_unknown_ca_clients_are_refused(tls_server, tmp_path):
    x = np.arange(3, dtype=np.float32)[None]
    plain = grpcclient.InferenceServerClient(tls_server.grpc_url)
    with pytest.raises(Exception):
        plain.infer("identity", make_inputs(grpcclient, {"x": x}), client_timeout=10)
    plain.close()
    other = make_ca_and_server_cert(tmp_path)  # a CA that did not sign the server's certificate
    module, stranger = connect(tls_server.grpc_url, "grpc", tls=Tls(root_certificates=other["ca"]))
    with pytest.raises(Exception):
        stranger.infer("identity", make_inputs(module, {"x": x}), client_timeout=10)
    stranger.close()


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(tmp_path):
    pem = make_ca_and_server_cert(tmp_path)
    repo = small_repository(tmp_path / "repo")
    env = {"GRPC_TLS_CERT": pem["cert"], "GRPC_TLS_KEY": pem["key"], "GRPC_TLS_CLIENT_CA": pem["ca"], "ADMIN_KEY": "tls-test-admin-key-0123"}
    launcher = Launcher(repo, env=env, args=["--no-watchdog"])
    try:
        launcher.wait_for("Ctrl-C stops the server")
        x = np.arange(3, dtype=np.float32)[None]
        module, client = connect(launcher.grpc_url, "grpc", tls=Tls(pem["ca"], private_key=pem["client_key"], certificate_chain=pem["client_cert"]))
        np.testing.assert_array_equal(client.infer("identity", make_inputs(module, {"x": x})).as_numpy("y"), x)
        client.close()
        module, anonymous = connect(launcher.grpc_url, "grpc", tls=Tls(pem["ca"]))  # no client certificate
        with pytest.raises(Exception):
            anonymous.infer("identity", make_inputs(module, {"x": x}), client_timeout=10)
        anonymous.close()
    finally:
        assert launcher.stop() == 0


def test_half_a_tls_configuration_is_refused_before_start(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runtime.server", "--model-repository", str(tmp_path)],
        env={**os.environ, "GRPC_TLS_CERT": str(tmp_path / "cert.pem"), "GRPC_TLS_KEY": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "GRPC_TLS_CERT and GRPC_TLS_KEY go together" in done.stderr


@pytest.fixture
def https_proxy(tls_server, tmp_path):
    """docker/nginx-https.conf in front of the server's HTTP endpoint."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        pytest.skip("nginx is not installed and `make nginx` could not install it (needs apt-get as root)")
    port = free_port()
    template = string.Template((REPO_ROOT / "docker" / "nginx-https.conf").read_text())
    conf = template.substitute(
        PREFIX=tmp_path, LISTEN=f"127.0.0.1:{port}", TRITON_HTTP=tls_server.http_url, CERT=tls_server.pem["cert"], KEY=tls_server.pem["key"]
    )
    (tmp_path / "nginx.conf").write_text(conf)
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", "nginx.conf", "-g", "daemon off;"])

    def listening() -> bool:
        assert process.poll() is None, (tmp_path / "error.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 20, f"nginx did not listen on port {port} within 20 s", interval=0.1)
        yield f"localhost:{port}"
    finally:
        process.terminate()
        process.wait(20)


def test_https_through_the_nginx_proxy(tls_server, https_proxy):
    module, client = connect(https_proxy, "http", tls=Tls(root_certificates=tls_server.pem["ca"]))
    x = np.arange(3, dtype=np.float32)[None]
    np.testing.assert_array_equal(client.infer("identity", make_inputs(module, {"x": x})).as_numpy("y"), x)
    client.close()
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "clients" / "datatypes_client.py"), "--url", https_proxy, "--ssl", "--root-certificates", tls_server.pem["ca"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    module, plain = connect(https_proxy, "http")  # plain HTTP to the TLS port
    with pytest.raises(Exception):
        plain.infer("identity", make_inputs(module, {"x": x}))
    plain.close()
