#!/usr/bin/env python3
"""Release build: single-file executables (shiv zipapps), release archives, krew manifests.

    .venv/bin/python scripts/build_release.py              # the release: every platform of krew/*.yaml
    .venv/bin/python scripts/build_release.py --host-only  # this machine's platform and Python, offline

Writes to ``dist/`` (``--out``):

    dist/kubectl-freeze, dist/kubectl-unfreeze          the executables for this machine (if built)
    dist/<os>_<arch>/kubectl-freeze, kubectl-unfreeze   the executables of each platform
    dist/kubectl-freeze_v<version>_<os>_<arch>.tar.gz   executables + LICENSE + README.md
    dist/krew/freeze.yaml, dist/krew/unfreeze.yaml      krew/*.yaml with version, uri and sha256 filled
    dist/SHA256SUMS

What ties an executable to a platform (checked here, not assumed): everything bundled is pure
Python except
- pydantic-core (typer needs pydantic, pydantic needs its compiled core; no pure fallback): the
  release bundles its compiled module for each CPython version from the bundle's floor (3.11:
  typer, python-dateutil) to 3.14, built for the archive's OS and CPU (glibc Linux, macOS); Python
  picks the one whose file name matches it;
- pyyaml's libyaml binding and charset-normalizer's mypyc builds: dropped, both fall back to
  their pure-Python code (slower, same results);
- aiohttp and its helpers: not bundled, nor kubernetes.aio, the asyncio client that is their only
  user; the plugin uses the synchronous client.
Any other compiled module stops the build until it is given one of these treatments.

The same inputs give the same bytes: shiv --reproducible, staged files with fixed modes, tar
entries sorted with fixed owner and mtime (SOURCE_DATE_EPOCH, else shiv's 1980-01-01 default),
gzip without a timestamp. The bundle is the dependency set installed in the environment running
this script (the versions the tests ran with); other platforms' compiled modules are fetched
with ``pip download`` (cached by pip).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

import yaml

REPO = Path(__file__).resolve().parent.parent
PROJECT = "kubectl-freeze"
PACKAGE = "kubectl_freeze"
SHEBANG = "/usr/bin/env python3"
SOURCE_DATE_EPOCH_DEFAULT = 315554400          # shiv's default (1980-01-01), used when the env var is unset
EXECUTABLES = {                                # file -> entry point (dispatches on its own name too)
    "kubectl-freeze": "kubectl_freeze.completion:zipapp_freeze",
    "kubectl-unfreeze": "kubectl_freeze.completion:zipapp_unfreeze",
}
KREW_TEMPLATES = {"freeze": REPO / "krew" / "freeze.yaml", "unfreeze": REPO / "krew" / "unfreeze.yaml"}
NEWEST_PYTHON = (3, 14)

# -- what is bundled, and how (see the module docstring) ------------------------------------------
PRUNED_REQUIREMENTS = {
    ("kubernetes", "aiohttp"): "only kubernetes.aio (the asyncio client) uses it",
}
PRUNED_PATHS = ("kubernetes/aio/",)
SPEEDUPS = {                                  # compiled modules dropped: the package has a pure fallback
    "pyyaml": "yaml falls back to its pure-Python loader and dumper without libyaml",
    "charset-normalizer": "mypyc builds of modules whose .py sources are shipped beside them",
}
NATIVE = {                                    # compiled modules kept, one per CPython version
    "pydantic-core": "pydantic's core (typer needs pydantic); there is no pure-Python fallback",
}
EXTENSION_RE = re.compile(r"\.(so|pyd|dylib)$|\.so\.")


@dataclass(frozen=True)
class Target:
    os: str
    arch: str
    machine: str                     # platform_machine as Python reports it there
    wheel_platforms: tuple[str, ...]  # pip --platform tags (pip expands older macOS versions itself)
    ext_marker: str                  # part of a matching extension module's file name

    @property
    def key(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def slug(self) -> str:
        return f"{self.os}_{self.arch}"

    def marker_env(self, python: tuple[int, int]) -> dict[str, str]:
        version = f"{python[0]}.{python[1]}"
        return {"os_name": "posix", "sys_platform": self.os, "platform_system": self.os.capitalize(),
                "platform_machine": self.machine, "platform_python_implementation": "CPython",
                "implementation_name": "cpython", "python_version": version,
                "python_full_version": version + ".0", "extra": ""}


TARGETS = {t.key: t for t in (
    Target("linux", "amd64", "x86_64", ("manylinux_2_17_x86_64", "manylinux2014_x86_64"), "x86_64-linux-gnu"),
    Target("linux", "arm64", "aarch64", ("manylinux_2_17_aarch64", "manylinux2014_aarch64"), "aarch64-linux-gnu"),
    Target("darwin", "amd64", "x86_64", ("macosx_10_12_x86_64",), "darwin"),
    Target("darwin", "arm64", "arm64", ("macosx_11_0_arm64",), "darwin"),
)}


class BuildError(Exception):
    pass


def host_target() -> Target:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    key = f"{sys.platform if sys.platform != 'linux2' else 'linux'}/{arch}"
    if key not in TARGETS:
        raise BuildError(f"this machine ({key}) is not a platform the release builds for")
    return TARGETS[key]


def version() -> str:
    text = (REPO / PACKAGE / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH") or SOURCE_DATE_EPOCH_DEFAULT)


# -- the dependency closure -----------------------------------------------------------------------
@dataclass
class Bundle:
    dists: dict[str, metadata.Distribution] = field(default_factory=dict)   # canonical name -> dist
    floor: tuple[int, int] = (3, 0)                                         # oldest CPython all support

    def versions(self) -> dict[str, str]:
        return {name: dist.version for name, dist in sorted(self.dists.items())}


def project_requirements() -> list[Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def resolve(targets: list[Target], pythons: list[tuple[int, int]]) -> Bundle:
    """The installed distributions the plugin needs on any of ``targets`` x ``pythons``."""
    bundle = Bundle()
    envs = [t.marker_env(p) for t in targets for p in pythons]
    todo = [(PROJECT, req) for req in project_requirements()]
    while todo:
        parent, req = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
            continue
        name = canonicalize_name(req.name)
        if (canonicalize_name(parent), name) in PRUNED_REQUIREMENTS or name in bundle.dists:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"{req.name} (required by {parent}) is not installed here; "
                             f"pip install -e '.[test]' first") from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise BuildError(f"installed {req.name} {dist.version} does not satisfy {parent}'s {req}")
        bundle.dists[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is not None and "extra" in str(sub.marker):
                continue      # extras are not bundled
            todo.append((dist.metadata["Name"], sub))
    floors = [_floor(dist.metadata.get("Requires-Python")) for dist in bundle.dists.values()]
    floors.append(_floor(tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("requires-python")))
    bundle.floor = max(floors)
    return bundle


def _floor(spec: str | None) -> tuple[int, int]:
    """The oldest 3.x minor version a Requires-Python admits."""
    if not spec:
        return (3, 0)
    specifier = SpecifierSet(spec)
    for minor in range(0, 40):
        if specifier.contains(f"3.{minor}.99", prereleases=True):
            return (3, minor)
    raise BuildError(f"Requires-Python {spec!r} admits no 3.x version")


# -- staging ------------------------------------------------------------------------------------
def _put(stage: Path, relative: str, data: bytes) -> None:
    path = stage / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def _skipped(relative: str) -> bool:
    parts = relative.split("/")
    if parts[0] == ".." or "__pycache__" in parts or relative.endswith(".pyc"):
        return True
    if parts[0].endswith(".dist-info") and parts[-1] in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
        return True
    return any(relative.startswith(p) for p in PRUNED_PATHS)


def stage_pure(bundle: Bundle, stage: Path) -> dict[str, list[str]]:
    """Copies every pure file of the bundle into ``stage``; returns the compiled modules it met,
    by distribution."""
    compiled: dict[str, list[str]] = {}
    for name, dist in sorted(bundle.dists.items()):
        for entry in dist.files or []:
            relative = entry.as_posix()
            if _skipped(relative):
                continue
            if EXTENSION_RE.search(relative):
                compiled.setdefault(name, []).append(relative)
                continue
            _put(stage, relative, Path(dist.locate_file(entry)).read_bytes())
    for name, files in compiled.items():
        if name not in SPEEDUPS and name not in NATIVE:
            raise BuildError(f"{name} ships compiled modules {files}: decide in build_release.py whether it has "
                             "a pure-Python fallback (SPEEDUPS) or must be built per platform (NATIVE)")
    for source in sorted((REPO / PACKAGE).rglob("*.py")):
        if "__pycache__" not in source.parts:
            _put(stage, source.relative_to(REPO).as_posix(), source.read_bytes())
    _put(stage, f"{PACKAGE}-{version()}.dist-info/METADATA",
         f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version()}\nLicense: Apache-2.0\n".encode())
    return compiled


def stage_native(bundle: Bundle, compiled: dict[str, list[str]], target: Target,
                 pythons: list[tuple[int, int]], stage: Path, downloads: Path, host: Target) -> list[str]:
    """The compiled modules of NATIVE distributions for ``target``, one per Python version."""
    here = (sys.version_info.major, sys.version_info.minor)
    written = []
    for name in sorted(n for n in compiled if n in NATIVE):
        dist = bundle.dists[name]
        for python in pythons:
            if target == host and python == here:
                files = {rel: Path(dist.locate_file(rel)).read_bytes() for rel in compiled[name]}
            else:
                files = _wheel_extensions(name, dist.version, target, python, downloads)
            tag = f"cpython-{python[0]}{python[1]}"
            for relative, data in sorted(files.items()):
                filename = relative.rsplit("/", 1)[-1]
                if tag not in filename or target.ext_marker not in filename:
                    raise BuildError(f"{name} for {target.key} CPython {python[0]}.{python[1]}: "
                                     f"unexpected module {filename}")
                _put(stage, relative, data)
                written.append(relative)
    return written


def _wheel_extensions(name: str, version_: str, target: Target, python: tuple[int, int],
                      downloads: Path) -> dict[str, bytes]:
    folder = downloads / f"{name}-{version_}-{target.slug}-cp{python[0]}{python[1]}"
    if not any(folder.glob("*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", f"{python[0]}.{python[1]}",
               "--abi", f"cp{python[0]}{python[1]}", "--dest", str(folder)]
        for tag in target.wheel_platforms:
            cmd += ["--platform", tag]
        done = subprocess.run(cmd + [f"{name}=={version_}"], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"no {name} {version_} wheel for {target.key} CPython {python[0]}.{python[1]}: "
                             f"{done.stderr.strip().splitlines()[-1:]}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one wheel in {folder}, found {[w.name for w in wheels]}")
    _, _, _, tags = parse_wheel_filename(wheels[0].name)
    if not any(t.interpreter == f"cp{python[0]}{python[1]}" for t in tags):
        raise BuildError(f"{wheels[0].name} is not for CPython {python[0]}.{python[1]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return {info.filename: wheel.read(info) for info in wheel.infolist()
                if EXTENSION_RE.search(info.filename)}


def verify_imports(stages: list[Path]) -> None:
    """The staged tree imports with this Python and nothing else on sys.path (no site-packages):
    the dropped speedups' fallbacks and the pruning hold."""
    code = ("import sys; sys.path[:0] = %r\n"
            "import yaml, charset_normalizer, requests, pydantic, typer, kubernetes.client, kubernetes.stream\n"
            "import kubernetes.watch, kubernetes.config, kubectl_freeze.cli, kubectl_freeze.completion\n"
            "assert not yaml.__with_libyaml__\n"
            "import typer.main; typer.main.get_command(kubectl_freeze.cli.freeze_app)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'multidict', 'yarl')]\n"
            "assert not bad, bad\n" % [str(s) for s in stages])
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"the staged bundle does not import on its own:\n{done.stderr}")


# -- executables and archives -----------------------------------------------------------------------
def build_zipapp(stages: list[Path], entry_point: str, output: Path) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(source_date_epoch()))
    cmd = [sys.executable, "-m", "shiv", "--reproducible", "--entry-point", entry_point,
           "--python", SHEBANG, "--output-file", str(output)]
    for stage in stages:
        cmd += ["--site-packages", str(stage)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BuildError(f"shiv failed: {done.stdout}{done.stderr}")
    output.chmod(0o755)


def write_tar_gz(output: Path, members: list[tuple[str, Path, int]]) -> None:
    """A reproducible .tar.gz: sorted entries, owner 0/0, fixed mtime, no gzip timestamp or name."""
    mtime = source_date_epoch()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for arcname, path, mode in sorted(members):
            data = path.read_bytes()
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    with output.open("wb") as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=9) as gz:
            gz.write(raw.getvalue())


def archive_name(target: Target) -> str:
    return f"{PROJECT}_v{version()}_{target.slug}.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- krew ---------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render_krew(template: Path, archives: dict[str, Path], release_url: str | None, complete: bool) -> str:
    """krew/<name>.yaml with version, uri and sha256 filled for the archives built; with
    ``complete``, every platform of the template must have one and every archive a platform."""
    doc = yaml.safe_load(template.read_text())
    spec = doc["spec"]
    spec["version"] = f"v{version()}"
    base = (release_url or f"{spec['homepage'].rstrip('/')}/releases/download/v{version()}").rstrip("/")
    platforms, used = [], set()
    for entry in spec["platforms"]:
        labels = entry["selector"]["matchLabels"]
        key = f"{labels['os']}/{labels['arch']}"
        if key not in archives:
            if complete:
                raise BuildError(f"{template.name}: no archive was built for {key}")
            continue
        entry["uri"] = f"{base}/{archives[key].name}"
        entry["sha256"] = sha256(archives[key])
        platforms.append(entry)
        used.add(key)
    if complete and set(archives) - used:
        raise BuildError(f"{template.name}: archives without a platform entry: {sorted(set(archives) - used)}")
    if not platforms:
        raise BuildError(f"{template.name}: none of its platforms was built")
    spec["platforms"] = platforms
    header = f"# Generated by scripts/build_release.py from krew/{template.name}: submit this file.\n"
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def template_platforms() -> list[str]:
    keys = []
    for template in KREW_TEMPLATES.values():
        for entry in yaml.safe_load(template.read_text())["spec"]["platforms"]:
            labels = entry["selector"]["matchLabels"]
            keys.append(f"{labels['os']}/{labels['arch']}")
    return sorted(set(keys))


# -- the build ----------------------------------------------------------------------------------
def build(out: Path, host_only: bool = False, release_url: str | None = None, readme: Path | None = None,
          pythons: list[tuple[int, int]] | None = None, log=print) -> dict:
    started = time.monotonic()
    readme = Path(readme or REPO / "README.md")
    license_file = REPO / "LICENSE"
    for needed in (readme, license_file):
        if not needed.is_file():
            raise BuildError(f"{needed} is missing: the release archives ship it")
    host = host_target()
    targets = [host] if host_only else [TARGETS[k] for k in template_platforms()]
    here = (sys.version_info.major, sys.version_info.minor)
    probe = resolve(targets, [here])
    if pythons is None:
        if host_only:
            pythons = [here]
        else:
            pythons = [(3, m) for m in range(probe.floor[1], NEWEST_PYTHON[1] + 1)]
    if min(pythons) < probe.floor:
        raise BuildError(f"the bundle needs CPython {probe.floor[0]}.{probe.floor[1]}+, not {min(pythons)}")
    bundle = resolve(targets, pythons)
    declared = re.search(r"^MIN_PYTHON = \((\d+), (\d+)\)", (REPO / PACKAGE / "completion.py").read_text(), re.M)
    if tuple(int(x) for x in declared.groups()) != bundle.floor:
        raise BuildError(f"the bundle needs CPython {bundle.floor[0]}.{bundle.floor[1]}+ but "
                         f"{PACKAGE}/completion.py says MIN_PYTHON = {declared.group(0)}: update it and the "
                         "krew caveats")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"version": version(), "python": f">={bundle.floor[0]}.{bundle.floor[1]}",
               "pythons": [f"{p[0]}.{p[1]}" for p in pythons], "bundled": bundle.versions(),
               "targets": {}, "krew": {}}
    with tempfile.TemporaryDirectory(prefix="kf-release-") as tmp:
        work = Path(tmp)
        pure = work / "pure"
        compiled = stage_pure(bundle, pure)
        downloads = Path(os.environ.get("KF_WHEEL_CACHE") or work / "wheels")
        archives: dict[str, Path] = {}
        for target in targets:
            site = work / "site" / target.slug          # the pure files (hard links) + this target's
            shutil.copytree(pure, site, copy_function=os.link)
            modules = stage_native(bundle, compiled, target, pythons, site, downloads, host)
            info = {"target": target.key, "pythons": summary["pythons"], "native": modules,
                    "bundled": summary["bundled"]}
            _put(site, f"{PACKAGE}/_bundle.json", json.dumps(info, indent=1, sort_keys=True).encode())
            if target == host and here in pythons:
                verify_imports([site])
            folder = out / target.slug
            folder.mkdir(parents=True, exist_ok=True)
            for name, entry in EXECUTABLES.items():
                build_zipapp([site], entry, folder / name)
            archive = out / archive_name(target)
            write_tar_gz(archive, [(name, folder / name, 0o755) for name in EXECUTABLES]
                         + [("LICENSE", license_file, 0o644), ("README.md", readme, 0o644)])
            archives[target.key] = archive
            summary["targets"][target.key] = {
                "archive": archive.name, "sha256": sha256(archive), "archive_bytes": archive.stat().st_size,
                "zipapp_bytes": (folder / "kubectl-freeze").stat().st_size, "native": modules}
            log(f"built {archive.name} ({archive.stat().st_size / 1e6:.1f} MB)")
            if target == host:
                for name in EXECUTABLES:
                    shutil.copy2(folder / name, out / name)
    (out / "krew").mkdir(exist_ok=True)
    for plugin, template in KREW_TEMPLATES.items():
        manifest = out / "krew" / template.name
        text = render_krew(template, archives, release_url, complete=not host_only)
        claim = f"CPython {pythons[0][0]}.{pythons[0][1]} to {pythons[-1][0]}.{pythons[-1][1]}"
        if not host_only and claim not in yaml.safe_load(text)["spec"]["caveats"]:
            raise BuildError(f"{template.name}: the caveats must say which Pythons the release supports: {claim}")
        manifest.write_text(text)
        summary["krew"][plugin] = str(manifest)
    sums = "".join(f"{sha256(p)}  {p.name}\n" for p in sorted(archives.values()))
    (out / "SHA256SUMS").write_text(sums)
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "build.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log(f"done in {summary['seconds']} s: CPython {', '.join(summary['pythons'])} on "
        f"{', '.join(summary['targets'])}; see {out / 'build.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist)")
    parser.add_argument("--host-only", action="store_true",
                        help="only this machine's platform and Python version (offline; what the tests use)")
    parser.add_argument("--python", action="append", metavar="X.Y",
                        help="CPython versions to support (repeatable; default: the bundle's floor to "
                             f"{NEWEST_PYTHON[0]}.{NEWEST_PYTHON[1]}, or this Python with --host-only)")
    parser.add_argument("--release-url", help="where the archives are published (default: "
                                              "<homepage>/releases/download/v<version>)")
    parser.add_argument("--readme", type=Path, help="the README.md to ship (default: the repository's)")
    args = parser.parse_args(argv)
    pythons = [tuple(int(x) for x in v.split(".")) for v in args.python] if args.python else None
    try:
        build(args.out, args.host_only, args.release_url, args.readme, pythons)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
