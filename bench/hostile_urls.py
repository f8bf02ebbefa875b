"""Wall time of the bulk sonify job on URLs with a few percent never-answering hosts, against the same without.

    python bench/hostile_urls.py                         # 200 URLs, 4 % dead hosts, --runner local
    python bench/hostile_urls.py --urls 1000 --runner ray --url-timeout 10

Everything is served on loopback (hence --allow-private-urls): the images by one HTTP server, each dead
"host" by its own 127.0.0.x address and port that accepts connections and never answers. The tiny preset
keeps the models cheap: it is the read stage that is measured. Target: ratio hanging/calm <= 2.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import socket
import tempfile
import threading
import time

import numpy as np
from PIL import Image

from i2a_core.jobs.sonify import SonifyJob, run
from i2a_core.specs import GenerationSettings, ImageLimits, resolve_models


def serve_images(count: int) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    rng = np.random.default_rng(0)
    bodies = {}
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        bodies[f"/img{i}.png"] = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket.listen(1024)  # 64 reads at once must not overflow the backlog (that looks like a dead host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return server, [f"{base}{path}" for path in bodies]


def silent_hosts(count: int) -> tuple[list[socket.socket], list[str]]:
    """Listeners that never accept: the kernel completes the handshake, then nothing is ever said."""
    sockets = []
    for i in range(count):
        s = socket.socket()
        s.bind((f"127.0.0.{100 + i}", 0))
        s.listen(1024)
        sockets.append(s)
    return sockets, [f"http://{s.getsockname()[0]}:{s.getsockname()[1]}/photo.jpg" for s in sockets]


def timed_job(urls: list[str], args: argparse.Namespace) -> tuple[float, str]:
    # Code from before --allow-private-urls existed fetched loopback anyway: the same script measures it.
    private = {"allow_private_urls": True} if "allow_private_urls" in ImageLimits.__dataclass_fields__ else {}
    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/urls.txt", "w") as f:
            f.write("\n".join(urls) + "\n")
        job = SonifyJob(inputs=(f"{folder}/urls.txt",), output=f"{folder}/out", models=resolve_models("tiny"),
                        settings=GenerationSettings(duration=0.25, steps=1, seed=0, batch_size=args.batch_size),
                        limits=ImageLimits(timeout_s=args.url_timeout, **private), runner=args.runner)
        started = time.perf_counter()
        summary = run(job, log=lambda line: None)
        return time.perf_counter() - started, summary.line()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=200, help="images served (default: 200)")
    parser.add_argument("--dead", type=float, default=0.04, help="fraction of never-answering hosts added")
    parser.add_argument("--url-timeout", type=float, default=ImageLimits.timeout_s,
                        help=f"seconds per URL (default: {ImageLimits.timeout_s:g}, as the job's)")
    parser.add_argument("--runner", choices=["local", "ray", "auto"], default="local")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    server, good = serve_images(args.urls)
    sockets, dead = silent_hosts(max(1, round(args.urls * args.dead)))
    # The dead hosts spread evenly through the list, as they would be in a scraped one.
    hanging = list(good)
    for i, url in enumerate(dead):
        hanging.insert((i + 1) * len(hanging) // (len(dead) + 1), url)
    timed_job(good[:2], args)  # warm-up: model cache, imports, a Ray start
    calm_s, calm_line = timed_job(good, args)
    hanging_s, hanging_line = timed_job(hanging, args)
    server.shutdown()
    for s in sockets:
        s.close()

    figures = {"urls": len(good), "dead_hosts": len(dead), "url_timeout_s": args.url_timeout,
               "runner": args.runner, "calm_s": round(calm_s, 2), "hanging_s": round(hanging_s, 2),
               "ratio": round(hanging_s / calm_s, 2)}
    print(f"calm:    {calm_line}")
    print(f"hanging: {hanging_line}")
    print(f"{len(good)} URLs, +{len(dead)} never-answering hosts, --url-timeout {args.url_timeout:g}, "
          f"--runner {args.runner}: calm {calm_s:.1f} s, hanging {hanging_s:.1f} s, "
          f"ratio hanging/calm {figures['ratio']:.2f} (target <= 2)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
