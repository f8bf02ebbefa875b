"""Shared, real fixtures: offline hub, one local Ray per session, a loopback HTTP server, moto's S3 server."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import free_port

# Offline before anything imports huggingface_hub: its retries would otherwise cost ~30 s per miss.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session", autouse=True)
def i2a_cache(tmp_path_factory):
    """One model cache per test session, so tiny models are built once and never leak between runs."""
    path = os.environ.get("I2A_TEST_CACHE") or str(tmp_path_factory.mktemp("i2a-cache"))
    os.environ["I2A_CACHE"] = path
    return path


@pytest.fixture(scope="session")
def ray_session(i2a_cache):
    """One local Ray instance for the whole test session."""
    import ray

    # address="local": never attach to a cluster that `ray start` left behind (the multi-node test makes one).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"I2A_CACHE": i2a_cache, "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(50):  # trickle bytes slower than any test timeout
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        super().do_GET()


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """A real HTTP server on loopback serving a folder; returns (folder, base URL). /slow... trickles."""
    root = tmp_path_factory.mktemp("http-root")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on loopback, as s3fs's own tests use; clients find it through AWS_ENDPOINT_URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    process.terminate()
    process.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket; returns its s3:// URL."""
    import uuid

    import boto3
    import fsspec

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    fsspec.filesystem("s3").invalidate_cache()
    return f"s3://{name}"


@pytest.fixture
def s3_proxy(s3_endpoint, monkeypatch):
    """A TcpProxy (tests/proxy.py) in front of moto's S3 server, with every new s3fs client going through it."""
    import s3fs
    from proxy import TcpProxy

    with TcpProxy(int(s3_endpoint.rsplit(":", 1)[1])) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        s3fs.S3FileSystem.clear_instance_cache()  # clients made before hold the direct endpoint
        yield proxy
        s3fs.S3FileSystem.clear_instance_cache()
