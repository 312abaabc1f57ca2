"""Build (and cache) what a test guest boots from: a Debian kernel and a busybox initramfs
carrying qemu-guest-agent.

Everything comes from Debian's packages. The kernel package is downloaded, never installed on
the host. Artifacts live in a cache folder and are rebuilt when their inputs change (the
kernel package version, the init script, the agent and busybox binaries).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
QEMU_GA = Path("/usr/sbin/qemu-ga")

# Debian builds these as modules; each one's dependencies must be loaded before it.
MODULES = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "drivers/char/virtio_console",
    "lib/crc16",
    "fs/mbcache",
    "fs/jbd2/jbd2",
    "crypto/crc32c_generic",
    "fs/ext4/ext4",
]

INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")


@dataclass(frozen=True)
class BootArtifacts:
    kernel: Path
    initrd: Path


def default_cache_dir() -> Path:
    env = os.environ.get("KUBECTL_FREEZE_RIG_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubectl-freeze-rig"


def _kernel_package() -> str:
    """The concrete package behind linux-image-amd64, e.g. linux-image-6.1.0-56-amd64."""
    out = subprocess.run(
        ["apt-cache", "depends", "linux-image-amd64"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"Depends:\s+(linux-image-\S+)", out)
    if not match:
        raise RuntimeError(
            "cannot find the Debian kernel package; run 'apt-get update' first:\n" + out
        )
    return match.group(1)


def _package_version(package: str) -> str:
    out = subprocess.run(
        ["apt-cache", "policy", package], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"Candidate:\s+(\S+)", out)
    return match.group(1) if match else "unknown"


def _extracted_kernel(cache: Path) -> tuple[Path, Path]:
    """Download and unpack the kernel package once; returns (vmlinuz, modules dir)."""
    package = _kernel_package()
    version = _package_version(package)
    root = cache / f"{package}_{version}"
    done = root / ".extracted"
    if not done.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(
                ["apt-get", "download", package],
                cwd=tmp, check=True, capture_output=True, text=True,
            )
            (deb,) = Path(tmp).glob("*.deb")
            staging = Path(tmp) / "x"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
            # Keep only what a guest boots from: the package unpacks to ~400 MB of modules.
            kept = Path(tmp) / "kept"
            (vmlinuz,) = (staging / "boot").glob("vmlinuz-*")
            (kept / "boot").mkdir(parents=True)
            shutil.copy2(vmlinuz, kept / "boot" / vmlinuz.name)
            (version_dir,) = (staging / "lib" / "modules").iterdir()
            for module in MODULES:
                source = version_dir / "kernel" / f"{module}.ko"
                dest = kept / "lib" / "modules" / version_dir.name / "kernel" / f"{module}.ko"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
            if root.exists():
                shutil.rmtree(root)
            kept.rename(root)
        done.touch()
    (vmlinuz,) = (root / "boot").glob("vmlinuz-*")
    (modules,) = (root / "lib" / "modules").iterdir()
    return vmlinuz, modules / "kernel"


def _shared_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _initrd_key(kernel_modules: Path) -> str:
    h = hashlib.sha256()
    h.update(INIT_SCRIPT.read_bytes())
    h.update("\n".join(MODULES).encode())
    h.update(str(kernel_modules).encode())
    for binary in (BUSYBOX, QEMU_GA):
        h.update(_file_digest(binary).encode())
    return h.hexdigest()[:16]


def _build_initrd(kernel_modules: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "dev", "proc", "sys", "run", "mnt", "tmp", "lib/modules", "usr/sbin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var").mkdir()
        (root / "var" / "run").symlink_to("../run")
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        shutil.copy2(QEMU_GA, root / "usr" / "sbin" / "qemu-ga")
        for lib in _shared_libraries(QEMU_GA):
            dest = root / lib.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib.resolve(), dest)
        order = []
        for module in MODULES:
            name = Path(module).name
            shutil.copy2(kernel_modules / f"{module}.ko", root / "lib" / "modules" / f"{name}.ko")
            order.append(name)
        (root / "lib" / "modules" / "order").write_text("\n".join(order) + "\n")
        init = root / "init"
        shutil.copy2(INIT_SCRIPT, init)
        init.chmod(0o755)
        # The kernel opens /dev/console before /init runs; without the node the init has no
        # stdout until it mounts devtmpfs.
        subprocess.run(["mknod", "-m", "600", str(root / "dev" / "console"), "c", "5", "1"], check=True)
        files = subprocess.run(
            ["find", "."], cwd=root, check=True, capture_output=True
        ).stdout
        archive = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc"], cwd=root, input=files,
            check=True, capture_output=True,
        ).stdout
    partial = target.with_suffix(".partial")
    partial.write_bytes(gzip.compress(archive, compresslevel=6))
    partial.rename(target)


def ensure_boot_artifacts(cache: Path | None = None) -> BootArtifacts:
    """The kernel and initramfs, built now if missing or out of date."""
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    vmlinuz, kernel_modules = _extracted_kernel(cache)
    initrd = cache / f"initrd-{_initrd_key(kernel_modules)}.cpio.gz"
    if not initrd.exists():
        _build_initrd(kernel_modules, initrd)
    return BootArtifacts(kernel=vmlinuz, initrd=initrd)


def make_data_disk(path: Path, size_mib: int = 32) -> None:
    """A raw disk image holding an empty ext4 filesystem."""
    with open(path, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", path.stem[:16], str(path)],
        check=True, capture_output=True,
    )
