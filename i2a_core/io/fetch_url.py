"""Downloads of untrusted http(s) URLs: address policy on every hop, one deadline, a size cap, nothing leaked."""

from __future__ import annotations

import http
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
HOST_FAILURES = 3  # timeouts or refused connections in a row after which a host is given up on ...
HOST_PAUSE_S = 30.0  # ... for this long


class FetchError(Exception):
    """Why a URL gave no bytes; `reason` never holds response bytes or credentials."""

    def __init__(self, reason: str, kind: str):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/?#]*@", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL without `user:pass@`, for anything a person or a file will see (never fails, even on junk)."""
    return _USERINFO.sub(r"\1", url)


def address_refusal(address: str, allow_private: bool) -> str | None:
    """Why connecting to this IP address is refused, or None when it is allowed.

    Cloud metadata services are never reachable, even with allow_private. An IPv6 address that carries an
    IPv4 address (IPv4-mapped and -compatible, 6to4, NAT64, Teredo) is judged by the address it carries: a
    6to4 relay or a NAT64 router would deliver it there.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    carried = _carried_ipv4(ip) if ip.version == 6 else []
    if not carried:
        return _refusal(ip, allow_private)
    for form, ipv4 in carried:  # Teredo carries two: the strictest verdict wins
        refusal = _refusal(ipv4, allow_private)
        if refusal:
            return f"{form} address carrying {ipv4}: {refusal}"
    return None


# Cloud metadata services outside link-local (169.254.169.254, used by AWS, GCP, Azure, Oracle, OpenStack and
# others, is link-local and refused as such): never reachable, whatever the flag says.
METADATA_ADDRESSES = {
    ipaddress.ip_address("fd00:ec2::254"): "AWS, IPv6",  # in fc00::/7 (private)
    ipaddress.ip_address("100.100.100.200"): "Alibaba Cloud",  # in 100.64.0.0/10 (shared address space)
    ipaddress.ip_address("192.0.0.192"): "Oracle Cloud Classic",  # in 192.0.0.0/24 (private)
}
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host" on Linux, like 0.0.0.0
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, but still routed inside some sites
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: NAT64 inside one network
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _refusal(ip, allow_private: bool) -> str | None:
    if ip in METADATA_ADDRESSES:
        return f"a cloud metadata address ({METADATA_ADDRESSES[ip]}), refused even with --allow-private-urls"
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return "an unspecified address, refused even with --allow-private-urls"
    # Link-local holds cloud metadata services (169.254.169.254): never, even with the flag.
    for never, what in ((ip.is_link_local, "link-local"), (ip.is_multicast, "multicast"),
                        (ip.is_reserved and not ip.is_loopback, "reserved")):  # ::1 sits in a reserved block
        if never:
            return f"a {what} address, refused even with --allow-private-urls"
    private = not ip.is_global or (ip.version == 6 and (ip in _SITE_LOCAL or ip in _NAT64_LOCAL))
    if not private:
        return None
    what = "loopback" if ip.is_loopback else "private"
    return None if allow_private else f"a {what} address (pass --allow-private-urls to allow it)"


def _carried_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form."""
    carried = []
    if ip.ipv4_mapped:
        carried.append(("an IPv4-mapped", ip.ipv4_mapped))
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # not :: nor ::1
        carried.append(("an IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip.sixtofour:
        carried.append(("a 6to4", ip.sixtofour))
    if ip in _NAT64:
        carried.append(("a NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip.teredo:
        server, client = ip.teredo
        carried += [("a Teredo", client), ("a Teredo", server)]
    return carried


class _HostHealth:
    """Per-process memory of hosts that keep timing out or refusing, so the rest of their URLs fail at once.

    A host given up on is tried again after HOST_PAUSE_S (a busy host recovers; its failed rows are
    transient and retried on rerun anyway), and one success clears its record.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: dict[str, tuple[int, float]] = {}  # host:port -> (failures in a row, time of the last)

    def check(self, host: str) -> None:
        with self.lock:
            count, last = self.failures.get(host, (0, 0.0))
        if count >= HOST_FAILURES and time.monotonic() - last < HOST_PAUSE_S:
            raise FetchError(f"{host} given up on for now: {count} downloads in a row timed out or were refused",
                             "host_unreachable")

    def record(self, host: str, failed: bool) -> None:
        with self.lock:
            if failed:
                self.failures[host] = (self.failures.get(host, (0, 0.0))[0] + 1, time.monotonic())
            else:
                self.failures.pop(host, None)


HOSTS = _HostHealth()


def fetch(url: str, timeout_s: float, max_bytes: int, allow_private: bool = False) -> bytes:
    """The body of a 2xx response, following at most MAX_REDIRECTS http(s) redirects, all within timeout_s."""
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        try:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise FetchError(f"redirected to a {parts.scheme or 'schemeless'} URL; only http(s) is followed",
                                 "bad_url")
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
            host = host and host.encode("idna").decode("ascii")  # the Host header must be ASCII
        except (ValueError, UnicodeError):
            raise FetchError("malformed host or port", "bad_url") from None
        if not host:
            raise FetchError("no host", "bad_url")
        where = f"{host}:{port}"
        HOSTS.check(where)
        try:
            address = _checked_address(host, port, allow_private, deadline)
            status, location, body = _request(parts, host, port, address, deadline, max_bytes)
        except http.client.IncompleteRead as e:  # a chunked body that ended early: the connection dropped
            raise FetchError(f"download cut short after {len(e.partial):,} bytes", "truncated_download") from None
        except (TimeoutError, ConnectionRefusedError) as e:
            HOSTS.record(where, failed=True)
            if isinstance(e, TimeoutError):
                raise FetchError(f"timed out after {timeout_s:g} s", "timeout") from None
            raise FetchError(f"connection refused by {address}", "unreachable") from None
        except ssl.SSLError as e:
            raise FetchError(f"TLS failed ({e.reason or type(e).__name__})", "unreachable") from None
        except (OSError, http.client.HTTPException) as e:  # resets, malformed status lines and headers
            raise FetchError(f"download failed ({type(e).__name__})", "unreachable") from None
        HOSTS.record(where, failed=False)
        if status in REDIRECTS and location:
            try:
                url = urllib.parse.urljoin(url, _location(location))
            except ValueError:
                raise FetchError("redirected to a malformed URL", "bad_url") from None
            continue
        if not 200 <= status < 300:
            # The standard phrase, never the server's own reason text.
            try:
                phrase = f" {http.HTTPStatus(status).phrase}"
            except ValueError:
                phrase = ""
            raise FetchError(f"HTTP {status}{phrase}", f"http_{status}")
        return body
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", "bad_url")


# getaddrinfo takes no timeout: it runs here, and the caller waits for it only until its deadline.
_RESOLVER = ThreadPoolExecutor(16, thread_name_prefix="i2a-resolve")


def _checked_address(host: str, port: int, allow_private: bool, deadline: float) -> str:
    """The address to connect to: every address the name resolves to must be allowed (no mixed answers)."""
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        raise TimeoutError from None
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"cannot resolve {host}", "unreachable") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        refusal = address_refusal(address, allow_private)
        if refusal:
            raise FetchError(f"refused: {host} is {address}, {refusal}", "refused_address")
    return addresses[0]


_TLS: ssl.SSLContext | None = None  # one for every download: building one loads the CA bundle (~14 ms)


def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:  # a race only builds two: contexts are thread-safe to share once built
        _TLS = ssl.create_default_context()
    return _TLS


def _request(parts, host: str, port: int, address: str, deadline: float, max_bytes: int):
    """One GET to the checked address (Host and TLS SNI name the host); returns status, Location, body."""
    if parts.scheme == "https":
        connection = _PinnedHTTPS(host, port, address, deadline, context=_tls())
    else:
        connection = _PinnedHTTP(host, port, address, deadline)
    try:
        path = urllib.parse.urlunsplit(("", "", _quote(parts.path or "/", _PATH_SAFE), _quote(parts.query, _QUERY_SAFE),
                                        ""))
        connection.request("GET", path, headers={"User-Agent": "i2a/0.1", "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in REDIRECTS:
            return response.status, response.getheader("Location", ""), b""
        declared = response.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{int(declared):,} bytes, over the {max_bytes:,}-byte limit", "too_large")
        body = response.read(max_bytes + 1) if 200 <= response.status < 300 else b""
        if len(body) > max_bytes:
            raise FetchError(f"over the {max_bytes:,}-byte limit", "too_large")
        # read(n) returns what arrived before the connection closed, without a word: compare with what was declared.
        if 200 <= response.status < 300 and not response.chunked and declared.isdigit() and len(body) < int(declared):
            raise FetchError(f"download cut short: {len(body):,} of {int(declared):,} bytes", "truncated_download")
        return response.status, "", body
    finally:
        connection.close()


# What a browser sends as it is (WHATWG URL: the path and query percent-encode sets): printable ASCII but
# space, quotes, <, > and, in a path, ?, `, { and }. The rest, non-ASCII above all, goes as %XX of its UTF-8.
_PATH_SAFE = "!$%&'()*+,/:;=@[\\]^|"
_QUERY_SAFE = _PATH_SAFE + "?`{}"
_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def _quote(text: str, safe: str) -> str:
    """A path or query as a browser sends it: `café.jpg` -> `caf%C3%A9.jpg`; an existing %XX is kept.
    Undecodable bytes of a file name (surrogate escapes) go as the bytes they were."""
    return urllib.parse.quote(text, safe=safe, errors="surrogateescape")


def _location(header: str) -> str:
    """A Location header as a browser reads it: http.client decodes header bytes as Latin-1, servers send
    UTF-8. Bytes that are not UTF-8 are kept as %XX, never guessed at."""
    raw = header.encode("latin-1", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return urllib.parse.quote_from_bytes(raw, safe=_PRINTABLE_ASCII)


class _DeadlineSocket:
    """A connected socket whose every read waits at most for what is left of the URL's deadline.

    A socket timeout bounds each read, not their sum: a server trickling one header byte a second would
    never trip it. Re-arming it before every read with the time left bounds the whole exchange.
    """

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def __getattr__(self, name):  # sendall, close, ...: the socket's own
        return getattr(self.sock, name)

    def makefile(self, mode="rb", *args, **kwargs):  # what http.client reads the response through
        # The socket's own unbuffered file keeps it open while the response is read after a close().
        return io.BufferedReader(_DeadlineReader(self.sock.makefile("rb", buffering=0), self.sock, self.deadline))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw, sock: socket.socket, deadline: float):
        self.raw, self.sock, self.deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        return self.raw.readinto(buffer)

    def close(self) -> None:
        self.raw.close()
        super().close()


def _connect(address: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection to this IP address; no name lookup (socket.create_connection would do one)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(remaining)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever the name resolves to next (DNS rebinding)."""

    def __init__(self, host, port, address, deadline, **kwargs):
        super().__init__(host, port, **kwargs)
        self.address, self.deadline = address, deadline

    def connect(self):
        self.sock = _DeadlineSocket(_connect(self.address, self.port, self.deadline), self.deadline)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, deadline, **kwargs):
        super().__init__(host, port, **kwargs)
        self.address, self.deadline = address, deadline

    def connect(self):
        sock = self._context.wrap_socket(_connect(self.address, self.port, self.deadline),
                                         server_hostname=self.host)  # the handshake is bounded by connect's timeout
        self.sock = _DeadlineSocket(sock, self.deadline)
