#!/usr/bin/env python3
"""Create and repair the project's environment in ``.venv/`` (idempotent).

Run with any Python 3; it needs only the standard library. It

1. creates ``.venv/`` with a CPython 3.9-3.11 (numba-dpex 0.23 has no wheels for newer),
2. installs this project (editable) with its exactly pinned SYCL stack and the extras,
3. repairs the RPATHs of the oneAPI/dpctl/dpnp/numba-dpex shared libraries.

Why step 3: the 2024.2 wheels were built by conda and carry RPATHs that point at build
placeholders, so nothing finds ``<venv>/lib`` unless ``LD_LIBRARY_PATH`` is exported.
We *append* an ``$ORIGIN``-relative path to ``<venv>/lib`` to every extension library in
``site-packages/{dpctl,dpnp,numba_dpex}`` and ``$ORIGIN`` to every library in
``<venv>/lib`` (libtbb is found that way); the old RPATH is kept because dpnp's backend
still resolves one of its own libraries through it. The rest of what the runtime needs
(the OpenCL ICD path, the CPU target) is set in-process by :mod:`xetile.runtime`.

Every step is skipped when a stamp says it was already done for the same inputs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".xetile-setup-stamp"
SUPPORTED = [(3, 11), (3, 10), (3, 9)]
EXTRAS = "test,bench,setup"
# bumped when the repair logic changes, so an old .venv is repaired again
REPAIR_VERSION = "1"


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def find_python() -> str:
    """A CPython 3.9-3.11 interpreter: this one, or one on PATH."""
    if sys.version_info[:2] in SUPPORTED:
        return sys.executable
    for major, minor in SUPPORTED:
        exe = shutil.which(f"python{major}.{minor}")
        if exe:
            return exe
    sys.exit(
        "[setup] error: numba-dpex 0.23 needs CPython 3.9, 3.10 or 3.11; "
        f"this is {sys.version.split()[0]} and no python3.11/3.10/3.9 is on PATH"
    )


def stamp_key() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"{EXTRAS}|{REPAIR_VERSION}".encode())
    return digest.hexdigest()


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def site_packages() -> Path:
    out = subprocess.run(
        [str(PY), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def add_rpath(patchelf: str, lib: Path, entry: str) -> bool:
    """Append ``entry`` to the RPATH of ``lib`` unless it is there already."""
    cur = subprocess.run([patchelf, "--print-rpath", str(lib)],
                         capture_output=True, text=True)
    if cur.returncode != 0:  # not an ELF file we can edit (linker script, etc.)
        return False
    parts = [p for p in cur.stdout.strip().split(":") if p]
    if entry in parts:
        return False
    # --force-rpath: keep DT_RPATH (searched before LD_LIBRARY_PATH, inherited by deps)
    subprocess.run([patchelf, "--force-rpath", "--set-rpath", ":".join(parts + [entry]),
                    str(lib)], check=True)
    return True


def repair_rpaths() -> int:
    patchelf = str(VENV / "bin" / "patchelf")
    venv_lib = (VENV / "lib").resolve()
    changed = 0
    for pkg in ("dpctl", "dpnp", "numba_dpex"):
        for lib in sorted((site_packages() / pkg).rglob("*.so*")):
            if lib.is_file() and not lib.is_symlink():
                rel = os.path.relpath(venv_lib, lib.parent.resolve())
                changed += add_rpath(patchelf, lib, f"$ORIGIN/{rel}")
    for lib in sorted(venv_lib.glob("*.so*")):
        if lib.is_file() and not lib.is_symlink():
            changed += add_rpath(patchelf, lib, "$ORIGIN")
    return changed


def main() -> None:
    if not PY.exists():
        python = find_python()
        log(f"creating {VENV} with {python}")
        run(python, "-m", "venv", str(VENV))
    if STAMP.exists() and STAMP.read_text() == stamp_key():
        log(".venv is up to date")
        return
    log("installing the pinned SYCL stack and this project (about 30 s, 2.8 GB)")
    run(str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[{EXTRAS}]")
    log(f"repaired the RPATH of {repair_rpaths()} shared libraries")
    STAMP.write_text(stamp_key())
    log("done")


if __name__ == "__main__":
    main()
