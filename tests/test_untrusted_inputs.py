"""Hostile inputs: every one becomes one error row (or a warning) and every other input still sounds once."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
from helpers import image_bytes
from test_bulk_sonify import SETTINGS, check_exactly_once

from i2a_core.cli import main
from i2a_core.io import fetch_url, images, listing, manifest
from i2a_core.jobs.sonify import SonifyJob, run
from i2a_core.specs import ImageLimits, resolve_models
from i2a_core.stages.images import read_images

TINY = ["--preset", "tiny", "--duration", "0.5", "--steps", "2"]
SECRET = "SECRET-FROM-THE-SERVER"


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Paths a hostile or broken web serves; `requests` counts every request that reached the server."""

    images: dict[str, bytes] = {}
    requests = 0

    def log_message(self, *args):
        pass

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        type(self).requests += 1
        type(self).last_host = self.headers.get("Host")
        port = self.server.server_address[1]
        if self.path.startswith("/img/"):
            body = self.images[self.path[len("/img/"):].split("?")[0]]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/page.jpg":
            body = f"<!DOCTYPE html><html>{SECRET}</html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/gone.png":
            self.send_response(404, SECRET)  # a reason phrase of the server's own
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/hop.png":
            self.redirect("/img/a.png")
        elif self.path == "/to-metadata.png":
            self.redirect("http://169.254.169.254/latest/meta-data/x.png")
        elif self.path == "/to-unspecified.png":
            self.redirect(f"http://0.0.0.0:{port}/img/a.png")
        elif self.path == "/to-ftp.png":
            self.redirect(f"ftp://127.0.0.1:{port}/a.png")
        elif self.path.startswith("/loop"):
            self.redirect(f"/loop{int(self.path[len('/loop'):].split('.')[0] or 0) + 1}.png")
        elif self.path == "/trickle-headers.png":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            try:
                for _ in range(200):  # one header byte at a time, each well inside a socket timeout
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass


@pytest.fixture(scope="module")
def hostile():
    """A loopback server with hostile paths: returns its base URL."""
    _Hostile.images = {"a.png": image_bytes(seed=1), "b.png": image_bytes(seed=2)}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.socket.listen(128)  # room for every read in flight: a full backlog would look like a dead host
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent_hosts():
    """Loopback "hosts" (127.0.0.x, own ports) that accept connections and never say a word."""
    sockets = []

    def make(count: int) -> list[str]:
        for _ in range(count):
            s = socket.socket()
            s.bind((f"127.0.0.{10 + len(sockets)}", 0))
            s.listen(64)  # the kernel completes handshakes; nobody ever accepts or answers
            sockets.append(s)
        return [f"http://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sockets[-count:]]

    yield make
    for s in sockets:
        s.close()


def url_job(tmp_path, urls, runner="local", timeout_s=2.0, **limits) -> tuple[SonifyJob, str]:
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    output = str(tmp_path / "out")
    limits = ImageLimits(timeout_s=timeout_s, **{"allow_private_urls": True, **limits})
    return SonifyJob(inputs=(str(tmp_path / "urls.txt"),), output=output, models=resolve_models("tiny"),
                     settings=SETTINGS, limits=limits, runner=runner), output


def rows_by_input(output: str) -> dict[str, dict]:
    return {r["input"]: r for r in manifest.read(output).to_pylist()}


# --- URLs ---


def test_the_checked_address_is_the_one_connected_to(hostile, monkeypatch):
    """The name is resolved once per hop and the socket goes to that address; Host still names the host."""
    port = int(hostile.rsplit(":", 1)[1])
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
                    [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]])
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: next(answers))  # a rebinding DNS
    data = fetch_url.fetch(f"http://images.example:{port}/img/a.png", 5.0, 10**6, allow_private=True)
    assert data == _Hostile.images["a.png"] and _Hostile.last_host == f"images.example:{port}"


def test_loopback_is_refused_before_any_request_without_the_flag(hostile, tmp_path):
    before = _Hostile.requests
    job, output = url_job(tmp_path, [f"{hostile}/img/a.png"], allow_private_urls=False)
    assert run(job).error == 1
    row = rows_by_input(output)[f"{hostile}/img/a.png"]
    assert row["error_kind"] == "refused_address"
    assert "127.0.0.1" in row["error"] and "--allow-private-urls" in row["error"]
    assert _Hostile.requests == before  # nothing reached the server

    # The job's own flag lets it through.
    assert main(["sonify-job", "--input", f"{hostile}/img/a.png", "--output", str(tmp_path / "allowed"),
                 "--allow-private-urls", "--runner", "local", *TINY]) == 0
    assert rows_by_input(str(tmp_path / "allowed"))[f"{hostile}/img/a.png"]["status"] == "ok"
    assert _Hostile.requests == before + 1


def test_hostile_server_cases_are_error_rows_and_the_rest_sound(hostile, tmp_path):
    port = hostile.rsplit(":", 1)[1]
    cases = {  # path -> (error_kind, words the error must hold)
        "/to-metadata.png": ("refused_address", "169.254.169.254"),
        "/to-unspecified.png": ("refused_address", "0.0.0.0"),
        "/to-ftp.png": ("bad_url", "only http(s)"),
        "/loop.png": ("bad_url", "more than 5 redirects"),
        "/trickle-headers.png": ("timeout", "timed out after 1 s"),
        "/page.jpg": ("not_image", "not an image (HTML, "),
        "/gone.png": ("http_404", "HTTP 404 Not Found"),
    }
    started = time.monotonic()  # the server would trickle headers for 20 s
    with pytest.raises(images.ImageError, match="timed out after 1 s"):
        images.read_image_bytes(f"{hostile}/trickle-headers.png", ImageLimits(timeout_s=1, allow_private_urls=True))
    assert time.monotonic() - started < 5

    good = [f"{hostile}/img/a.png", f"{hostile}/hop.png", f"http://me:{SECRET}@127.0.0.1:{port}/img/b.png"]
    junk = "http://[::1/broken.png"
    job, output = url_job(tmp_path, good + [junk] + [hostile + path for path in cases], timeout_s=1.0)
    summary = run(job)
    assert (summary.ok, summary.error) == (len(good), len(cases) + 1)
    shown = [fetch_url.redact(url) for url in good] + [junk] + [hostile + path for path in cases]
    table = check_exactly_once(output, shown)
    assert SECRET not in json.dumps(table.to_pylist(), default=str)  # no credentials, no server bytes
    rows = rows_by_input(output)
    assert rows[junk]["error_kind"] == "bad_url"
    for path, (kind, words) in cases.items():
        row = rows[hostile + path]
        assert (row["error_kind"], row["error"].startswith(hostile + path)) == (kind, True), row
        assert words in row["error"], row["error"]


def test_i2a_sonify_never_prints_credentials_or_server_bytes(hostile, tmp_path, capsys):
    port = hostile.rsplit(":", 1)[1]
    out = tmp_path / "out"
    status = main(["sonify", f"http://me:{SECRET}@127.0.0.1:{port}/img/a.png", f"{hostile}/page.jpg",
                   f"{hostile}/gone.png", "--allow-private-urls", "--output", str(out), *TINY])
    printed = capsys.readouterr()
    assert status == 1 and SECRET not in printed.out + printed.err
    [sidecar] = (out / "audio").rglob("*.json")
    assert SECRET not in sidecar.read_text() and json.loads(sidecar.read_text())["warning"] == ""
    assert len(list(out.rglob("*.wav"))) == 1


def test_dead_hosts_cost_one_timeout_and_are_then_given_up(tmp_path, silent_hosts, hostile):
    dead = silent_hosts(6)
    urls = [f"{hostile}/img/a.png", f"{hostile}/img/b.png"] + [f"{host}/x{i}.png" for i, host in
                                                                 enumerate(dead)]
    # Reads overlap: six silent hosts cost about one timeout, not six one after another (12 s).
    limits = ImageLimits(timeout_s=2.0, allow_private_urls=True)
    started = time.monotonic()
    items = {"input": np.array(urls[::-1], dtype=object), "error": np.array([""] * len(urls), dtype=object),
             "error_kind": np.array([""] * len(urls), dtype=object)}
    chunks = list(read_images(iter([items]), limits, batch_size=2))
    assert time.monotonic() - started < 6
    assert [list(c["input"]) for c in chunks][-1] == urls[:2][::-1] and list(chunks[-1]["error"]) == ["", ""]
    assert sum(len(c["input"]) for c in chunks) == len(urls)

    job, output = url_job(tmp_path, urls, timeout_s=2.0)
    summary = run(job)
    assert (summary.ok, summary.error) == (2, 6), summary.line()
    assert {rows_by_input(output)[f"{host}/x{i}.png"]["error_kind"] for i, host in enumerate(dead)} == {"timeout"}
    check_exactly_once(output, urls)

    # After HOST_FAILURES timeouts in a row, a host's other URLs fail at once (and are retried on rerun).
    host = dead[0]
    for i in range(fetch_url.HOST_FAILURES - 2):  # two timeouts in a row so far: read_batch's, the job's
        with pytest.raises(images.ImageError, match="timed out"):
            images.read_image_bytes(f"{host}/more{i}.png", ImageLimits(timeout_s=0.3, allow_private_urls=True))
    started = time.monotonic()
    with pytest.raises(images.ImageError) as error:
        images.read_image_bytes(f"{host}/last.png", ImageLimits(timeout_s=5, allow_private_urls=True))
    assert error.value.kind == "host_unreachable" and time.monotonic() - started < 0.5


def test_dead_hosts_on_ray_keep_the_rest_flowing(ray_session, tmp_path, silent_hosts, hostile):
    dead = silent_hosts(3)
    urls = [f"{hostile}/img/a.png?n={i}" for i in range(12)] + [f"{host}/x.png" for host in dead]
    job, output = url_job(tmp_path, urls, runner="ray", timeout_s=2.0)
    summary = run(job)
    assert (summary.ok, summary.error, summary.error_kinds) == (12, 3, {"timeout": 3})
    check_exactly_once(output, urls)


# --- local files ---


def test_fifos_devices_and_dot_names(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "fifo.jpg")  # opening it for reading would wait for a writer for ever
    os.symlink("/dev/zero", folder / "zero.jpg")  # reading it would never end
    os.symlink(folder / "loop-b.png", folder / "loop-a.png")
    os.symlink(folder / "loop-a.png", folder / "loop-b.png")
    (folder / ".jpg").write_bytes(image_bytes(seed=1, fmt="JPEG"))
    (folder / "..jpg").write_bytes(image_bytes(seed=2, fmt="JPEG"))
    (folder / "big.png").write_bytes(image_bytes(size=(64, 64)))
    os.symlink(folder / ".jpg", folder / "link.jpg")  # a symlinked file is read like any file
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "hidden.png").write_bytes(image_bytes())
    os.symlink(tmp_path / "elsewhere", folder / "linked-folder")  # folders are not followed

    listed = {os.path.basename(item.input) for item in listing.list_inputs([str(folder)])}
    assert listed == {"fifo.jpg", "zero.jpg", "loop-a.png", "loop-b.png", ".jpg", "..jpg", "big.png", "link.jpg"}
    output = str(tmp_path / "out")
    big = len(image_bytes(size=(64, 64)))
    job = SonifyJob(inputs=(str(folder),), output=output, models=resolve_models("tiny"), settings=SETTINGS,
                    limits=ImageLimits(max_bytes=big - 1), runner="local")
    summary = run(job)
    assert (summary.ok, summary.error) == (3, 5)
    rows = {os.path.basename(k): r for k, r in rows_by_input(output).items()}
    assert {name: rows[name]["error_kind"] for name in rows if rows[name]["status"] != "ok"} == {
        "fifo.jpg": "not_regular_file", "zero.jpg": "not_regular_file", "loop-a.png": "unreadable",
        "loop-b.png": "unreadable", "big.png": "too_large"}
    check_exactly_once(output, [str(folder / name) for name in listed])

    # `i2a sonify` too: the FIFO is an error line, not a hang.
    status = main(["sonify", str(folder / "fifo.jpg"), str(folder / ".jpg"), "--output", str(tmp_path / "cli"),
                   *TINY])
    assert status == 1 and "fifo.jpg: not a regular file" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "audio").glob("*.wav"))) == 1


# --- decoding ---


def test_thin_images_are_cropped_before_any_resize():
    thin, warning = images.decode_checked(image_bytes(size=(2, 3_000_000)), "thin.png")
    assert thin.size == (2, 2 * images.MAX_ASPECT) and "centre-cropped" in warning
    wide, _ = images.decode_checked(image_bytes(size=(400, 3)), "wide.png")
    assert wide.size == (3 * images.MAX_ASPECT, 3)


def test_lying_extensions_sound_with_a_warning_and_non_images_do_not(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "webp.jpg").write_bytes(image_bytes(fmt="WEBP"))
    (folder / "thin.png").write_bytes(image_bytes(size=(2, 40_000)))
    (folder / "text.png").write_text("just words")
    output = str(tmp_path / "out")
    summary = run(SonifyJob(inputs=(str(folder),), output=output, models=resolve_models("tiny"),
                            settings=SETTINGS, runner="local"))
    assert (summary.ok, summary.error) == (2, 1)
    rows = {os.path.basename(k): r for k, r in rows_by_input(output).items()}
    assert rows["webp.jpg"]["warning"] == "extension says JPEG but the content is WEBP"
    assert "centre-cropped" in rows["thin.png"]["warning"]
    assert rows["text.png"]["error"].endswith("not an image (text, 10 bytes)")
    check_exactly_once(output, [str(p) for p in folder.iterdir()])


# --- output names ---


def test_crafted_key_collisions_get_distinct_outputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes(seed=1, fmt="JPEG"))
    (folder / "a.png").write_bytes(image_bytes(seed=2))
    crafted = f"a-{listing._short_hash(str(folder / 'a.jpg'))}"  # the name a.jpg's suffixed key would take
    (folder / f"{crafted}.jpg").write_bytes(image_bytes(seed=3, fmt="JPEG"))
    (folder / f"{crafted.upper()}.PNG").write_bytes(image_bytes(seed=4))  # same key on a case-blind disk
    items = listing.list_inputs([str(folder)])
    assert len({item.key.lower() for item in items}) == 4
    output = str(tmp_path / "out")
    assert run(SonifyJob(inputs=(str(folder),), output=output, models=resolve_models("tiny"), settings=SETTINGS,
                         runner="local")).ok == 4
    check_exactly_once(output, [str(p) for p in folder.iterdir()])


def test_long_multibyte_names_and_failed_writes(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["猫" * n + ".png" for n in (60, 72, 80)]  # up to 243 bytes: legal, but no room for affixes
    for i, name in enumerate(names):
        (folder / name).write_bytes(image_bytes(seed=i))
    (folder / "blocked.png").write_bytes(image_bytes(seed=9))
    output = tmp_path / "out"
    (output / "audio" / "blocked.wav").mkdir(parents=True)  # a folder where the WAV should go
    summary = run(SonifyJob(inputs=(str(folder),), output=str(output), models=resolve_models("tiny"),
                            settings=SETTINGS, runner="local"))
    assert (summary.ok, summary.error, summary.error_kinds) == (3, 1, {"write_failed": 1})
    table = manifest.read(str(output))
    assert all(len(part.encode()) <= 200 for key in table.column("output").to_pylist() for part in key.split("/"))
    ok = table.filter(pa.compute.equal(table.column("status"), "ok"))
    assert len(set(ok.column("output").to_pylist())) == 3 and all((output / o).is_file()
                                                                    for o in ok.column("output").to_pylist())

    # `i2a sonify` writes the same names, and a failed write is that clip's error line only.
    cli = tmp_path / "cli"
    (cli / "audio" / "blocked.wav").mkdir(parents=True)
    assert main(["sonify", str(folder), "--output", str(cli), *TINY]) == 1
    assert "blocked.png: cannot write (Is a directory)" in capsys.readouterr().out
    wavs = list((cli / "audio").glob("*.wav"))
    assert len(wavs) == 4 and len([p for p in wavs if p.is_file()]) == 3
