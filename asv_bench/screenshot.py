"""Publish the asv results and save a PNG of one benchmark's graph page (headless Chromium).

Run from anywhere, with the project's venv::

    .venv/bin/python asv_bench/screenshot.py                       # first time_ benchmark
    .venv/bin/python asv_bench/screenshot.py --bench bench_attention.Decode.track_gbps \
        --out /tmp/decode.png

It runs ``asv publish`` (skip with ``--no-publish``), makes the published pages work
offline (below), serves ``asv_bench/html`` on a free loopback port (asv's pages load their
data with fetch(), which file:// URLs refuse), and runs Debian's ``chromium`` headless with
a fresh profile and no background networking (``apt-get install -y chromium`` if it is
missing). Exit status 2 when something it needs is missing (no results, no chromium), 1
when Chromium wrote no image.

Offline pages: asv's ``index.html`` loads jQuery, flot, bootstrap and three small plugins
from public CDNs and shows only "Can not determine continental origin of swallow" without
them. :func:`localize` fetches the same packages with ``npm pack`` from the npm registry
(cached in ``~/.cache/xetile-fmha/asv-vendor``), unpacks them into ``html/_vendor/`` and
points the tags there, dropping their ``integrity`` hashes (the npm files are the
unminified builds of the same versions, or the nearest version npm has). After this,
``asv preview`` works offline too, until the next ``asv publish``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
HTML = HERE / "html"
# Chromium's own connections (updates, sync, QUIC probes) are refused on a closed network
# and slow every start; these flags keep it to the page asked for.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Virtual milliseconds Chromium lets the page run (fetch the JSON, draw the plot) before
# the capture; virtual time does not wait for the wall clock when the page is idle.
RENDER_BUDGET_MS = 20000
VENDOR_CACHE = Path.home() / ".cache" / "xetile-fmha" / "asv-vendor"
# cdnjs library names that differ from the npm package names
CDNJS_TO_NPM = {"stupidtable": "stupid-table-plugin"}
_CDN_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https://[^"]+\.(?:js|css))"[^>]*>')
_CDN_URL = [
    (re.compile(r"https://cdn\.jsdelivr\.net/npm/(@?[^@/]+)@([^/]+)/(.+)"),
     lambda m: (m[1], m[2], m[3])),
    (re.compile(r"https://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/([^/]+)/(.+)"),
     lambda m: (CDNJS_TO_NPM.get(m[1], m[1]), m[2], m[3])),
    (re.compile(r"https://code\.jquery\.com/jquery-([\d.]+)(\.min)?\.js"),
     lambda m: ("jquery", m[1], f"dist/jquery{m[2] or ''}.js")),
]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("screenshot.py: no chromium on PATH; install it with "
                     "`apt-get update && apt-get install -y chromium`")


def publish(asv: str) -> None:
    subprocess.run([asv, "publish"], cwd=HERE, check=True)


def npm_package(name: str, version: str) -> tuple:
    """The unpacked-ready tarball of ``name@version`` (or of ``name``'s latest, when npm
    has no such version) in :data:`VENDOR_CACHE`, and the version it holds."""
    VENDOR_CACHE.mkdir(parents=True, exist_ok=True)
    for spec in (f"{name}@{version}", name):
        cached = sorted(VENDOR_CACHE.glob(f"{name.lstrip('@').replace('/', '-')}-"
                                          f"{version if spec != name else '*'}.tgz"))
        if cached:
            return cached[-1], cached[-1].stem.rsplit("-", 1)[-1]
        proc = subprocess.run(["npm", "pack", spec, "--pack-destination", str(VENDOR_CACHE)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            tgz = VENDOR_CACHE / proc.stdout.strip().splitlines()[-1]
            return tgz, tgz.stem.rsplit("-", 1)[-1]
    raise LookupError(f"npm has no package {name}")


def _member(names: list, path: str) -> str:
    """The file in a package matching a CDN path: itself, else the same base name
    anywhere (shortest path), else the unminified base name."""
    if path in names:
        return path
    base = path.rsplit("/", 1)[-1]
    for want in (base, base.replace(".min.", ".")):
        hits = sorted((n for n in names if n.rsplit("/", 1)[-1] == want), key=len)
        if hits:
            return hits[0]
    raise LookupError(f"no {path} in the package")


def localize(html: Path, log=print) -> int:
    """Point ``html/index.html``'s CDN scripts and styles at local npm copies.

    Returns how many tags were rewritten; tags that cannot be served locally are left
    alone (the page then needs the network) with a note through ``log``.
    """
    index = html / "index.html"
    text = index.read_text()
    vendor = html / "_vendor"
    done = 0

    def rewrite(tag: re.Match) -> str:
        nonlocal done
        url = tag[2]
        for pattern, parts in _CDN_URL:
            m = pattern.fullmatch(url)
            if m:
                break
        else:
            log(f"screenshot.py: left {url} as is (unknown CDN)")
            return tag[0]
        name, version, path = parts(m)
        try:
            if shutil.which("npm") is None:
                raise LookupError("npm is not installed")
            tgz, got = npm_package(name, version)
            dest = vendor / f"{name}@{got}"
            with tarfile.open(tgz) as tar:
                names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
                member = _member(names, path)
                if not dest.exists():
                    tar.extractall(dest.parent / (dest.name + ".tmp"), filter="data")
                    (dest.parent / (dest.name + ".tmp") / "package").rename(dest)
                    shutil.rmtree(dest.parent / (dest.name + ".tmp"))
        except (LookupError, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
            log(f"screenshot.py: left {url} as is ({exc})")
            return tag[0]
        done += 1
        local = f"_vendor/{name}@{got}/{member}"
        out = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag[0])
        return out.replace(url, local)

    index.write_text(_CDN_TAG.sub(rewrite, text))
    return done


def pick_benchmark(html: Path, wanted: str | None) -> str:
    """``wanted``, or the first ``time_`` benchmark that has results in the published site."""
    index = html / "index.json"
    if not index.exists():
        raise SystemExit(f"screenshot.py: {index} is missing: run `asv run` then "
                         "`asv publish` (or drop --no-publish)")
    names = sorted(json.loads(index.read_text())["benchmarks"])
    if wanted:
        if wanted not in names:
            raise SystemExit(f"screenshot.py: no published benchmark {wanted!r}; "
                             f"published: {', '.join(names)}")
        return wanted
    with_graphs = [n for n in names if any((html / "graphs").rglob(f"{n}.json"))]
    timed = [n for n in with_graphs if ".time_" in n] or with_graphs
    if not timed:
        raise SystemExit("screenshot.py: the published site has no results yet")
    return timed[0]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: Path):
    """An HTTP server for ``directory`` on 127.0.0.1 (free port), in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(url: str, out: Path, size: str, chromium: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="asv-chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--window-size={size}", f"--virtual-time-budget={RENDER_BUDGET_MS}",
               f"--screenshot={out}", url]
        subprocess.run(cmd, check=False, timeout=120, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if not out.exists() or out.stat().st_size == 0:
        raise SystemExit(1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", help="benchmark to show, e.g. bench_attention.Decode."
                                   "time_attention (default: the first time_ with results)")
    p.add_argument("--out", type=Path, default=HERE / "screenshot.png",
                   help="PNG to write (default asv_bench/screenshot.png)")
    p.add_argument("--size", default="1400,1000", help="window WIDTH,HEIGHT in pixels")
    p.add_argument("--no-publish", action="store_true", help="use the existing html/")
    p.add_argument("--no-localize", action="store_true",
                   help="keep the CDN links of the published pages (needs network)")
    p.add_argument("--asv", default=str(Path(sys.executable).with_name("asv")),
                   help="asv executable (default: the one beside this Python)")
    args = p.parse_args(argv)
    chromium = find_chromium()
    if not args.no_publish:
        publish(args.asv)
    bench = pick_benchmark(HTML, args.bench)
    if not args.no_localize:
        localize(HTML)
    server = serve(HTML)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/#{bench}"
        screenshot(url, args.out, args.size, chromium)
    finally:
        server.shutdown()
    print(f"{args.out} ({bench})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
