"""The release build (issue 5): scripts/build_release.py makes single-file executables with
shiv, reproducibly; the release archives hold them with LICENSE and README.md; the krew
manifests pass krew's validation and name the archives' sha256; and the built file, run by a
Python with nothing installed, freezes and thaws real guests through the real kubectl.

The build here is --host-only (this platform, this Python, offline); the full release adds the
other platforms' compiled pydantic-core modules with `pip download`, which tests do not do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubectl_freeze import __version__, completion
from tests.conftest import KUBECTL

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "scripts" / "build_release.py"
EXECUTABLES = ("kubectl-freeze", "kubectl-unfreeze")
BUILD_SECONDS_MAX = 60


def _load_build_module():
    spec = importlib.util.spec_from_file_location("build_release", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_release"] = module        # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build_release = _load_build_module()


@dataclass
class Release:
    out: Path
    summary: dict
    seconds: float
    readme: Path

    @property
    def archive(self) -> Path:
        [(key, info)] = self.summary["targets"].items()
        return self.out / info["archive"]


def run_build(out: Path, readme: Path) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(BUILD), "--host-only", "--out", str(out), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.monotonic() - started


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    root = tmp_path_factory.mktemp("release")
    readme = REPO / "README.md"
    if not readme.is_file():                 # the README is written elsewhere; the build needs one
        readme = root / "README.md"
        readme.write_text("# kubectl-freeze\n")
    seconds = run_build(root / "dist", readme)
    summary = json.loads((root / "dist" / "build.json").read_text())
    return Release(root / "dist", summary, seconds, readme)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A Python with the standard library only (a venv without pip or site packages): the
    executable must bring everything else."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert subprocess.run([venv / "bin" / "python3", "-c", "import yaml"], capture_output=True).returncode != 0
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(release, bare_python, tmp_path_factory) -> dict:
    """A PATH as on a user's machine: the built executables (and kubectl_complete-* symlinks to
    them), kubectl, the bare python3, the system; and a SHIV_ROOT of its own."""
    bin_dir = tmp_path_factory.mktemp("user-bin")
    for name in EXECUTABLES:
        shutil.copy2(release.out / name, bin_dir / name)
        (bin_dir / f"kubectl_complete-{name.split('-', 1)[1]}").symlink_to(name)
    (bin_dir / "kubectl").symlink_to(KUBECTL)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG", "NO_COLOR")}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(bare_python), "/usr/bin", "/bin"])
    env["SHIV_ROOT"] = str(tmp_path_factory.mktemp("shiv-root"))
    return env


# ----- the build ---------------------------------------------------------------------------------
def test_build_is_quick_and_reproducible(release, tmp_path):
    assert release.seconds < BUILD_SECONDS_MAX, f"the build took {release.seconds:.1f} s"
    run_build(tmp_path / "again", release.readme)
    built = sorted(p.relative_to(release.out) for p in release.out.rglob("*") if p.is_file())
    again = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert built == again
    for relative in built:
        if relative.name == "build.json":        # holds the build's duration
            continue
        assert (release.out / relative).read_bytes() == (tmp_path / "again" / relative).read_bytes(), relative


def test_archive_holds_the_executables_license_and_readme_reproducibly(release):
    data = release.archive.read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0", "gzip header without a timestamp"
    assert release.archive.name == f"kubectl-freeze_v{__version__}_{build_release.host_target().slug}.tar.gz"
    with tarfile.open(release.archive) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["LICENSE", "README.md", "kubectl-freeze", "kubectl-unfreeze"]
        for member in members:
            assert member.isfile() and (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
            assert member.mtime == build_release.source_date_epoch()
            assert member.mode == (0o755 if member.name.startswith("kubectl-") else 0o644)
            assert tar.extractfile(member).read() == {
                "LICENSE": REPO / "LICENSE", "README.md": release.readme}.get(
                member.name, release.out / member.name).read_bytes()
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    sums = (release.out / "SHA256SUMS").read_text()
    assert sums == f"{hashlib.sha256(data).hexdigest()}  {release.archive.name}\n"


def test_zipapp_is_pure_python_but_for_pydantic_core_for_this_python(release):
    path = release.out / "kubectl-freeze"
    assert path.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(path, os.X_OK)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        env = json.loads(zf.read("environment.json"))
        bundle = json.loads(zf.read("site-packages/kubectl_freeze/_bundle.json"))
    assert env["entry_point"] == "kubectl_freeze.completion:zipapp_freeze" and env["reproducible"]
    compiled = [n for n in names if build_release.EXTENSION_RE.search(n)]
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert len(compiled) == 1 and compiled[0].startswith("site-packages/pydantic_core/_pydantic_core.")
    assert tag in compiled[0]
    assert not [n for n in names if n.startswith(("site-packages/kubernetes/aio/", "site-packages/aiohttp/"))]
    assert "site-packages/kubectl_freeze/freezer.py" in names     # what it ships into launcher pods
    assert "site-packages/yaml/__init__.py" in names and "site-packages/kubernetes/client/__init__.py" in names
    assert bundle["target"] == build_release.host_target().key
    assert bundle["bundled"]["kubernetes"] and "aiohttp" not in bundle["bundled"]
    unfreeze = json.loads(zipfile.ZipFile(release.out / "kubectl-unfreeze").read("environment.json"))
    assert unfreeze["entry_point"] == "kubectl_freeze.completion:zipapp_unfreeze"
    assert unfreeze["build_id"] == env["build_id"]          # the same bundle, another entry point


def test_zipapp_runs_on_a_python_with_nothing_installed(installed):
    first = subprocess.run(["kubectl-freeze", "--version"], capture_output=True, text=True, env=installed, timeout=120)
    assert (first.returncode, first.stdout) == (0, f"kubectl-freeze {__version__}\n"), first.stderr
    started = time.monotonic()
    again = subprocess.run(["kubectl-freeze", "--version"], capture_output=True, text=True, env=installed)
    assert again.returncode == 0 and time.monotonic() - started < 5
    help_ = subprocess.run(["kubectl-unfreeze", "vm", "-h"], capture_output=True, text=True, env=installed)
    assert help_.returncode == 0 and help_.stdout.startswith("Usage: kubectl unfreeze vm")
    script = subprocess.run(["kubectl-freeze", "completion", "bash"], capture_output=True, text=True, env=installed)
    assert script.stdout == (REPO / "completions" / "kubectl-freeze.bash").read_text()
    complete = subprocess.run(["kubectl_complete-unfreeze", ""], capture_output=True, text=True, env=installed)
    assert complete.stdout.split("\n")[0].split("\t")[0] == "vm" and complete.stdout.endswith(":4\n")
    assert sorted(p.name.rsplit("_", 1)[0] for p in Path(installed["SHIV_ROOT"]).iterdir()
                  if not p.name.startswith(".")) == ["kubectl-freeze", "kubectl-unfreeze"]


def test_zipapp_says_which_python_it_needs(release, tmp_path):
    """On a Python older than the bundle's floor: one error line, no traceback."""
    code = ("import sys, runpy; sys.version_info = (3, 8, 10, 'final', 0); sys.argv = [sys.argv[1], '--version']; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(release.out / "kubectl-freeze")],
                         capture_output=True, text=True, env=dict(os.environ, SHIV_ROOT=str(tmp_path)))
    assert out.returncode == 1
    assert out.stderr.startswith("error: kubectl-freeze needs Python 3.11 or newer") and "Traceback" not in out.stderr


# ----- krew ----------------------------------------------------------------------------------------
KREW_API = "krew.googlecontainertools.github.com/v1alpha2"
KREW_PLATFORMS = [(os_, arch) for os_ in ("linux", "darwin", "windows") for arch in ("386", "amd64", "arm", "arm64")]
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def krew_problems(path: Path, archives: Path | None = None, template: bool = False) -> list[str]:
    """What krew (internal/index/validation, cmd/validate-krew-manifest) and krew-index's rules
    reject in a manifest; with ``archives``, the archives its uris name must be there, with that
    sha256, and hold what `files` and `bin` need."""
    problems = []
    doc = yaml.safe_load(path.read_text())
    name = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else ""
    if not name:
        problems.append("the file name must be <plugin>.yaml")
    if doc.get("apiVersion") != KREW_API:
        problems.append(f"apiVersion {doc.get('apiVersion')!r}")
    if doc.get("kind") != "Plugin":
        problems.append(f"kind {doc.get('kind')!r}")
    plugin = (doc.get("metadata") or {}).get("name")
    if plugin != name:
        problems.append(f"metadata.name {plugin!r} is not the file's name {name!r}")
    if not re.match(r"^[\w-]+$", name or "") or name.upper() in WINDOWS_RESERVED:
        problems.append(f"unsafe plugin name {name!r}")
    spec = doc.get("spec") or {}
    if not template and not SEMVER.match(str(spec.get("version", ""))):
        problems.append(f"version {spec.get('version')!r} is not a v-prefixed semver")
    short = spec.get("shortDescription") or ""
    if not short or "\n" in short or "\r" in short or len(short) > 50:
        problems.append(f"shortDescription must be one line of 1..50 characters: {short!r}")
    if not str(spec.get("homepage", "")).startswith("https://"):
        problems.append("homepage must be an https URL")
    for key in ("description", "caveats"):
        for line in str(spec.get(key) or "").splitlines():
            if len(line) > 80 and " " in line.strip():
                problems.append(f"{key} line longer than 80 characters: {line!r}")
    if not spec.get("description"):
        problems.append("no description")
    platforms = spec.get("platforms") or []
    if not platforms:
        problems.append("no platforms")
    matched: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(platforms):
        where = f"platforms[{index}]"
        selector = entry.get("selector")
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            problems.append(f"{where}: empty selector")
            continue
        if selector.get("matchExpressions"):
            problems.append(f"{where}: matchExpressions are not checked here; use matchLabels")
        labels = selector.get("matchLabels") or {}
        if set(labels) - {"os", "arch"}:
            problems.append(f"{where}: selector keys other than os/arch: {sorted(set(labels) - {'os', 'arch'})}")
        hits = [p for p in KREW_PLATFORMS if labels.get("os", p[0]) == p[0] and labels.get("arch", p[1]) == p[1]]
        if not hits:
            problems.append(f"{where}: selector {labels} matches no platform krew runs on")
        for hit in hits:
            if hit in matched:
                problems.append(f"{where}: selects {hit} like platforms[{matched[hit]}]")
            matched[hit] = index
        uri, sha = str(entry.get("uri") or ""), str(entry.get("sha256") or "")
        if template:
            if uri != "{{uri}}" or sha != "{{sha256}}":
                problems.append(f"{where}: a template leaves uri and sha256 to the build")
        else:
            if not uri.startswith("https://"):
                problems.append(f"{where}: uri must be https: {uri!r}")
            if not re.match(r"^[a-f0-9]{64}$", sha):
                problems.append(f"{where}: sha256 {sha!r} is not 64 lower-case hex digits")
        files = entry.get("files")
        if files is not None and (not files or any(not f.get("from") or not f.get("to") for f in files)):
            problems.append(f"{where}: files must be unset, or each have from and to")
        if not entry.get("bin"):
            problems.append(f"{where}: no bin")
        members = None
        if archives is not None and not template:
            archive = archives / uri.rsplit("/", 1)[-1]
            if not archive.is_file():
                problems.append(f"{where}: no archive {archive.name} for {uri}")
                continue
            if hashlib.sha256(archive.read_bytes()).hexdigest() != sha:
                problems.append(f"{where}: sha256 does not match {archive.name}")
            with tarfile.open(archive) as tar:
                members = [m.name for m in tar.getmembers() if m.isfile()]
        installed = set()
        for op in files or [{"from": "*", "to": "."}]:
            found = [m for m in (members or [op["from"]]) if fnmatch.fnmatch(m, op["from"])]
            if members is not None and not found:
                problems.append(f"{where}: files.from {op['from']!r} matches nothing in the archive")
            for member in found:
                target = os.path.normpath(os.path.join(op["to"], os.path.basename(member)))
                if target.startswith(".."):
                    problems.append(f"{where}: files.to {op['to']!r} leaves the plugin's folder")
                installed.add(target)
        if entry.get("bin") and os.path.normpath(entry["bin"]) not in installed:
            problems.append(f"{where}: bin {entry['bin']!r} is not among the installed files {sorted(installed)}")
    return problems


@pytest.mark.parametrize("plugin", ["freeze", "unfreeze"])
def test_built_krew_manifests_pass_krews_validation_and_name_the_archive(release, plugin):
    manifest = release.out / "krew" / f"{plugin}.yaml"
    assert krew_problems(manifest, archives=release.out) == []
    doc = yaml.safe_load(manifest.read_text())
    [platform] = doc["spec"]["platforms"]            # a --host-only build: this platform only
    assert platform["sha256"] == hashlib.sha256(release.archive.read_bytes()).hexdigest()
    assert platform["uri"].endswith(f"/v{__version__}/{release.archive.name}")
    assert doc["spec"]["version"] == f"v{__version__}"
    assert platform["bin"] == f"kubectl-{plugin}"
    assert "python3" in doc["spec"]["caveats"] and "pods/exec" in doc["spec"]["caveats"]


@pytest.mark.parametrize("plugin", ["freeze", "unfreeze"])
def test_krew_templates_cover_every_release_platform_and_render_complete(plugin, tmp_path):
    template = REPO / "krew" / f"{plugin}.yaml"
    assert krew_problems(template, template=True) == []
    keys = build_release.template_platforms()
    assert keys == sorted(build_release.TARGETS)
    fake = {}
    for key in keys:
        path = tmp_path / f"kubectl-freeze_v{__version__}_{key.replace('/', '_')}.tar.gz"
        path.write_bytes(key.encode())
        fake[key] = path
    rendered = tmp_path / f"{plugin}.yaml"
    rendered.write_text(build_release.render_krew(template, fake, "https://example.com/r", complete=True))
    assert krew_problems(rendered) == []
    spec = yaml.safe_load(rendered.read_text())["spec"]
    assert [p["uri"] for p in spec["platforms"]] == [f"https://example.com/r/{fake[k].name}" for k in
                                                     [f"{p['selector']['matchLabels']['os']}/"
                                                      f"{p['selector']['matchLabels']['arch']}"
                                                      for p in spec["platforms"]]]
    del fake[keys[0]]
    with pytest.raises(build_release.BuildError):
        build_release.render_krew(template, fake, None, complete=True)
    floor, newest = completion.MIN_PYTHON, build_release.NEWEST_PYTHON
    pythons = f"CPython {floor[0]}.{floor[1]} to {newest[0]}.{newest[1]}"
    assert pythons in spec["caveats"], "the caveats name the Pythons the release supports"


def _platform(doc: dict) -> dict:
    return doc["spec"]["platforms"][0]


@pytest.mark.parametrize("change,complaint", [pytest.param(change, complaint, id=complaint.replace(" ", "-"))
                                              for change, complaint in [
    (lambda d: d["metadata"].update(name="other"), "metadata.name"),
    (lambda d: d.update(apiVersion="krew.googlecontainertools.github.com/v1alpha1"), "apiVersion"),
    (lambda d: d["spec"].update(shortDescription="x" * 51), "shortDescription"),
    (lambda d: d["spec"].update(version="0.1.0"), "semver"),
    (lambda d: d["spec"].update(platforms=[]), "no platforms"),
    (lambda d: d["spec"]["platforms"].append(_platform(d)), "selects"),
    (lambda d: _platform(d)["selector"]["matchLabels"].update(distro="debian"), "keys other"),
    (lambda d: _platform(d).update(uri="http://example.com/a.tar.gz"), "https"),
    (lambda d: _platform(d).update(sha256="ABC"), "sha256"),
    (lambda d: _platform(d).update(bin="kubectl-other"), "bin"),
    (lambda d: _platform(d)["files"].__setitem__(0, {"from": "nothing-*", "to": "."}), "matches nothing"),
    (lambda d: d["spec"].update(caveats="word " * 30), "longer than 80"),
]])
def test_the_krew_check_rejects_what_krew_rejects(release, tmp_path, change, complaint):
    doc = yaml.safe_load((release.out / "krew" / "freeze.yaml").read_text())
    change(doc)
    bad = tmp_path / "freeze.yaml"
    bad.write_text(yaml.safe_dump(doc))
    problems = krew_problems(bad, archives=release.out)
    assert any(complaint in p for p in problems), problems


# ----- the built file through the real kubectl, against the simulator ---------------------------
@pytest.mark.cluster
def test_built_zipapp_freezes_and_thaws_through_kubectl(cluster, installed):
    env = dict(installed, KUBECONFIG=str(cluster.kubeconfig))
    guest = cluster.guests["vm1"]

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=180)

    listed = kubectl("plugin", "list")
    assert str(Path(installed["PATH"].split(os.pathsep)[0]) / "kubectl-freeze") in listed.stdout
    names = kubectl("__complete", "freeze", "vm", "")
    assert [line.split("\t")[0] for line in names.stdout.splitlines()] == ["vm1", "vm2", ":4"], names.stderr
    frozen = kubectl("freeze", "vm", "vm1", "-o", "json")
    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(frozen.stdout)["items"][0]["ok"] is True
    assert guest.agent_status() == "frozen"
    assert cluster.vmi("vm1")["status"].get("fsFreezeStatus") == "frozen"
    offered = kubectl("__complete", "unfreeze", "vm", "")
    assert [line.split("\t")[0] for line in offered.stdout.splitlines()] == ["vm1", ":4"]
    thawed = kubectl("unfreeze", "vm", "vm1")
    assert thawed.returncode == 0, thawed.stderr
    assert guest.agent_status() == "thawed"
    assert "fsFreezeStatus" not in cluster.vmi("vm1")["status"]


# ----- opt-in: the release's several CPython versions (downloads wheels with pip) ---------------
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


@pytest.mark.skipif(not os.environ.get("KF_RELEASE_PYTHONS_TEST"),
                    reason="set KF_RELEASE_PYTHONS_TEST=1: builds with pydantic-core wheels from the package index")
def test_one_executable_runs_on_every_cpython_it_claims(release, tmp_path):
    pythons = sorted({p.name.rsplit(".", 1)[0] for p in PYENV.glob("3.*") if (p / "bin" / "python3").exists()})
    claimed = [v for v in pythons if tuple(map(int, v.split("."))) >= completion.MIN_PYTHON]
    assert claimed, f"no CPython {completion.MIN_PYTHON}+ under {PYENV}"
    out = tmp_path / "dist"
    args = [arg for v in claimed for arg in ("--python", v)]
    done = subprocess.run([sys.executable, str(BUILD), "--host-only", *args, "--out", str(out), "--readme",
                           str(release.readme)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for version in pythons:
        [home] = sorted(PYENV.glob(f"{version}.*"))[-1:]
        venv = tmp_path / f"venv-{version}"
        subprocess.run([home / "bin" / "python3", "-m", "venv", "--without-pip", str(venv)], check=True)
        run = subprocess.run([venv / "bin" / "python3", out / "kubectl-freeze", "--version"], capture_output=True,
                             text=True, env=dict(os.environ, SHIV_ROOT=str(tmp_path / f"shiv-{version}")))
        if version in claimed:
            assert (run.returncode, run.stdout) == (0, f"kubectl-freeze {__version__}\n"), (version, run.stderr)
        else:
            assert run.returncode == 1 and "needs Python" in run.stderr, (version, run.stderr)
