"""io/fetch_url: URLs as browsers send them, downloads cut short, and the address policy on every hop."""

from __future__ import annotations

import http.server
import ipaddress
import threading

import pytest
from helpers import image_bytes

from i2a_core.cli import main
from i2a_core.errors import is_transient
from i2a_core.io import fetch_url, manifest

PNG = image_bytes(seed=3)
TINY = ["--preset", "tiny", "--duration", "0.5", "--steps", "2"]


class _Server(http.server.BaseHTTPRequestHandler):
    """Raw answers: headers written as bytes, so a Location can hold UTF-8 or Latin-1, and bodies can stop short."""

    paths: list[str] = []

    def log_message(self, *args):
        pass

    def raw(self, head: bytes, body: bytes = b"") -> None:
        self.wfile.write(head + b"\r\n" + body)
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        type(self).paths.append(self.path)
        if self.path in ("/caf%C3%A9.png", "/a.png?q=%C3%A9", "/caf%E9.png", "/a%20b.png"):
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n" % len(PNG), PNG)
        elif self.path == "/to-utf8":  # the Location's bytes are UTF-8, as servers send them
            self.raw(b"HTTP/1.1 302 Found\r\nLocation: /caf\xc3\xa9.png\r\nContent-Length: 0\r\n")
        elif self.path == "/to-latin1":  # not UTF-8: the byte is kept as %E9
            self.raw(b"HTTP/1.1 302 Found\r\nLocation: /caf\xe9.png\r\nContent-Length: 0\r\n")
        elif self.path == "/cut.png":  # declares the whole file, sends a third, closes
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(PNG), PNG[:len(PNG) // 3])
        elif self.path == "/cut-chunked.png":  # one chunk, then the connection drops before the last one
            self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n" % (100, PNG[:100]))
        elif self.path.startswith("/to/"):  # /to/<host>: a redirect to that host
            host = self.path[len("/to/"):]
            self.raw(b"HTTP/1.1 302 Found\r\nLocation: http://%s/x.png\r\nContent-Length: 0\r\n" % host.encode())
        else:
            self.raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def get(url: str) -> bytes:
    return fetch_url.fetch(url, timeout_s=5.0, max_bytes=10**6, allow_private=True)


def test_non_ascii_paths_queries_and_redirects_are_percent_encoded_as_browsers_do(server, http_root):
    _Server.paths.clear()
    # Before: http.client raised UnicodeEncodeError, which stopped the whole job.
    assert get(f"{server}/café.png") == PNG
    assert get(f"{server}/a.png?q=é") == PNG
    assert get(f"{server}/a b.png") == PNG  # before: InvalidURL, counted as "unreachable"
    assert get(f"{server}/to-utf8") == PNG
    assert get(f"{server}/to-latin1") == PNG
    assert _Server.paths == ["/caf%C3%A9.png", "/a.png?q=%C3%A9", "/a%20b.png", "/to-utf8", "/caf%C3%A9.png",
                             "/to-latin1", "/caf%E9.png"]
    assert get(f"{server}/caf%C3%A9.png") == PNG  # already encoded: left as it is
    # A real file server decodes the name back.
    root, base = http_root
    (root / "été.png").write_bytes(PNG)
    assert get(f"{base}/été.png") == PNG


@pytest.mark.parametrize("path", ["/cut.png", "/cut-chunked.png"])
def test_a_download_cut_short_is_transient_not_corrupt(server, path):
    with pytest.raises(fetch_url.FetchError, match="cut short") as error:
        get(server + path)
    assert error.value.kind == "truncated_download" and is_transient(error.value.kind)  # before: corrupt


def test_address_policy():
    refuse = fetch_url.address_refusal
    for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                   "2002:5db8:d822::1", "64:ff9b::5db8:d822", _teredo("93.184.216.34")]:  # carrying a public IPv4
        assert refuse(public, False) is None, public
    for private in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "::1", "fd00::1", "::ffff:127.0.0.1",
                    "fec0::1",  # site-local (before: allowed without the flag)
                    "2002:7f00:1::1", "2002:c0a8:101::", "64:ff9b::a01:203", "::127.0.0.1", _teredo("10.0.0.1")]:
        assert "--allow-private-urls" in refuse(private, False) and refuse(private, True) is None, private
    for never in ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "0.1.2.3", "224.0.0.1", "ff02::1", "240.0.0.1",
                  "fd00:ec2::254", "100.100.100.200", "192.0.0.192",  # cloud metadata (before: allowed with the flag)
                  # 169.254.169.254 inside each IPv6 transition form (before: 6to4 and NAT64 were allowed)
                  "::ffff:169.254.169.254", "::169.254.169.254", "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe",
                  _teredo("169.254.169.254")]:
        assert "refused even with --allow-private-urls" in refuse(never, True), never
    assert "6to4 address carrying 169.254.169.254" in refuse("2002:a9fe:a9fe::1", True)
    assert "cloud metadata" in refuse("fd00:ec2::254", True)
    assert fetch_url.redact("https://user:pa55@example.org:8080/a.png?x=1") == "https://example.org:8080/a.png?x=1"


def _teredo(client: str, server: str = "65.54.227.120") -> str:
    """A Teredo address (2001::/32): the server's IPv4, then the client's IPv4 with every bit flipped."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64) | (
        int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF)
    return str(ipaddress.IPv6Address(value))


@pytest.mark.parametrize("host", ["[fd00:ec2::254]", "100.100.100.200", "[2002:a9fe:a9fe::]",
                                  "[64:ff9b::a9fe:a9fe]", "[::ffff:169.254.169.254]"])
def test_metadata_addresses_are_refused_through_redirects_even_with_the_flag(server, host):
    with pytest.raises(fetch_url.FetchError, match="refused even with --allow-private-urls") as error:
        get(f"{server}/to/{host}")  # allow_private=True
    assert error.value.kind == "refused_address"


def test_a_job_with_hostile_urls_finishes_and_each_is_one_row(server, tmp_path):
    good = [f"{server}/café.png", f"{server}/to-utf8", f"{server}/a.png?q=é"]
    bad = {f"{server}/cut.png": "truncated_download", f"{server}/to/[fd00:ec2::254]": "refused_address",
           f"{server}/to/100.100.100.200": "refused_address"}
    (tmp_path / "urls.txt").write_text("\n".join([*good, *bad]) + "\n", encoding="utf-8")
    output = str(tmp_path / "out")
    assert main(["sonify-job", "--input", str(tmp_path / "urls.txt"), "--output", output, "--runner", "local",
                 "--allow-private-urls", *TINY]) == 1  # some inputs failed; the job did not stop
    rows = {r["input"]: r for r in manifest.read(output).to_pylist()}
    assert {url: rows[url]["status"] for url in good} == {url: "ok" for url in good}
    assert {url: rows[url]["error_kind"] for url in bad} == bad
