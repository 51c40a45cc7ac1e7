"""Bundle installs survive a crash at any instant (issue 14, item 1).

A child process installs a bundle and SIGKILLs itself right after install step k (through
``edgerec._bundle_root._step_hook``), for every k; then the target must load as the old bundle (a kill
before the pointer switch) or the new one (at or after it), score, and lose every leftover at
the next cleanup or install. Then 20 kills at random instants of back-to-back installs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgerec import ShortlistConfig
from edgerec._bundle_root import SHORTLIST_FILE
from edgerec.bundle import (POINTER_FILE, VERSIONS_DIR, clean_bundle_root, load_bundle,
                            resolve_bundle, write_bundle)
from edgerec.events import signal_code
from edgerec.model.config import ModelConfig
from edgerec.model.params import init_params
from edgerec.scoring import Scorer
from edgerec.signing import generate_signing_key, public_key_bytes, sign_bytes
from edgerec.sync import install_bundle, pack_bundle

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL crash injection is POSIX-only")

# Every step of an install, in order; the pointer switch is "pointer-replaced".
STEPS = ["member-written", "staged", "synced", "renamed", "pointer-written", "pointer-replaced",
         "switched", "removed", "installed"]
SWITCH = STEPS.index("pointer-replaced")

_INSTALL_CHILD = r"""
import os, signal, sys
from pathlib import Path
import edgerec.bundle as b
import edgerec._bundle_root as steps
from edgerec.sync import install_bundle
step, archive, target, key, floor = sys.argv[1:6]
def crash(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
steps._step_hook = crash
install_bundle(Path(archive).read_bytes(), target, key, newer_than=int(floor))
"""

_WRITE_CHILD = r"""
import os, signal, sys
import edgerec.bundle as b
import edgerec._bundle_root as steps
step, source, target = sys.argv[1:4]
src = b.load_bundle(source)
def crash(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
steps._step_hook = crash
b.write_bundle(target, src.params, src.catalogue, src.config, model_version=src.version + 1)
"""

_LOOP_CHILD = r"""
import sys
from pathlib import Path
from edgerec.sync import install_bundle
target, key, *paths = sys.argv[1:]
archives = [Path(p).read_bytes() for p in paths]
print("ready", flush=True)
i = 0
while True:
    install_bundle(archives[i % len(archives)], target, key)
    i += 1
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sequences):
    """(hex public key, {version: archive file}, {version: plain signed folder}) for v1..v5."""
    key = generate_signing_key()
    _, cat = tiny_sequences()
    cfg = ModelConfig(dim=4, history=3)
    params = init_params(cfg, len(cat), cat.features.shape[1], np.random.default_rng(0))
    base = tmp_path_factory.mktemp("crash-bundles")
    archives, folders = {}, {}
    for version in (1, 2, 3, 4, 5):
        folder = base / f"plain-v{version}"
        # v2 (the plain folder apps ship) and v4 carry the optional shortlist graph: one more
        # file that must appear and go with its bundle whatever the instant of the crash.
        shortlist = ShortlistConfig(clusters=4, probe=2) if version in (2, 4) else None
        write_bundle(folder, params, cat, cfg, model_version=version,
                     sign=lambda raw: sign_bytes(key, raw), shortlist=shortlist)
        archives[version] = base / f"v{version}.zip"
        archives[version].write_bytes(pack_bundle(folder))
        folders[version] = folder
    return public_key_bytes(key).hex(), archives, folders


def _child(code: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def _leftovers(target: Path) -> list[str]:
    """Crash leftovers: staging, trash and orphan folders, temporary pointers, old siblings."""
    live = resolve_bundle(target).name
    versions = target / VERSIONS_DIR
    inside = [p.name for p in versions.iterdir()] if versions.is_dir() else []
    stale = [n for n in inside if n.startswith(".")]
    newer = [n for n in inside if n.startswith("v") and n > live]  # never became live
    temps = [p.name for p in target.iterdir() if p.name.startswith(f".{POINTER_FILE}")]
    siblings = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    return stale + newer + temps + siblings


def _assert_serves(target: Path, key: str, version: int) -> None:
    bundle = load_bundle(target, public_key=key)
    assert bundle.version == version
    assert (bundle.shortlist_path is not None) == (version in (2, 4))
    scorer = Scorer(bundle.model_path, len(bundle.catalogue), bundle.config.history,
                    shortlist=bundle.shortlist_path)
    click = signal_code("click", 1.0)
    no_exclusions = np.zeros(0, np.int64)
    items, scores = scorer.top_k(np.array([1, 2]), np.array([click, click]), no_exclusions, 3)
    assert len(items) == 3 and np.all(np.isfinite(scores))


def _root_on(tmp_path: Path, world, *versions: int) -> Path:
    key, archives, _ = world
    target = tmp_path / "model"
    for version in versions:
        install_bundle(archives[version].read_bytes(), target, key)
    return target


def _after_the_crash(target: Path, world, old: int, step: str) -> None:
    """The target serves the old or the new bundle, per step; then nothing stale survives."""
    key, archives, _ = world
    expected = old if STEPS.index(step) < SWITCH else old + 1
    _assert_serves(target, key, expected)
    clean_bundle_root(target)
    assert _leftovers(target) == []
    if resolve_bundle(target) == target:  # still the plain folder: not even an empty .versions
        assert not (target / VERSIONS_DIR).exists()
    _assert_serves(target, key, expected)
    # And the next install works on top of whatever the crash left.
    assert install_bundle(archives[5].read_bytes(), target, key, newer_than=expected).version == 5
    assert _leftovers(target) == []
    live = resolve_bundle(target)
    assert live.parent == target / VERSIONS_DIR
    assert len(list(live.parent.iterdir())) <= 2  # the live version and the previous one
    assert not (target / "manifest.json").exists()  # a plain bundle it replaced is gone
    assert not (target / SHORTLIST_FILE).exists()  # with its shortlist graph


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_after_any_install_step_leaves_the_old_or_the_new_bundle(tmp_path, world, step):
    key, archives, _ = world
    target = _root_on(tmp_path, world, 1, 2, 3)  # a root: v2 the previous version, v3 live
    done = _child(_INSTALL_CHILD, step, archives[4], target, key, 3)
    assert done.returncode == -signal.SIGKILL, done.stderr  # it did reach the step
    _after_the_crash(target, world, 3, step)


@pytest.mark.parametrize("step", STEPS)
def test_a_plain_folder_becomes_a_root_crash_safely(tmp_path, world, step):
    key, archives, folders = world
    target = tmp_path / "model"
    shutil.copytree(folders[2], target)  # what apps ship: a plain bundle folder
    done = _child(_INSTALL_CHILD, step, archives[3], target, key, 2)
    assert done.returncode == -signal.SIGKILL, done.stderr
    _after_the_crash(target, world, 2, step)


@pytest.mark.parametrize("step", ["synced", "pointer-written", "pointer-replaced", "removed"])
def test_write_bundle_onto_an_existing_bundle_is_crash_safe(tmp_path, world, step):
    key, _, folders = world
    target = tmp_path / "model"
    shutil.copytree(folders[2], target)
    done = _child(_WRITE_CHILD, step, folders[2], target)
    assert done.returncode == -signal.SIGKILL, done.stderr
    expected = 2 if STEPS.index(step) < SWITCH else 3
    assert load_bundle(target).version == expected  # write_bundle here signs nothing
    clean_bundle_root(target)
    assert _leftovers(target) == []


@pytest.mark.parametrize("step", ["member-written", "staged", "synced", "installed"])
def test_a_kill_during_a_first_install_leaves_nothing_or_the_whole_bundle(tmp_path, world, step):
    key, archives, _ = world
    target = tmp_path / "model"
    done = _child(_INSTALL_CHILD, step, archives[1], target, key, 0)
    assert done.returncode == -signal.SIGKILL, done.stderr
    if step == "installed":
        _assert_serves(target, key, 1)
    else:  # before the rename into place: no bundle, as before the install began
        assert not target.exists()
    assert install_bundle(archives[2].read_bytes(), target, key, newer_than=0).version == 2
    assert _leftovers(target) == []  # the dead install's staging next to it went too


def test_twenty_kills_at_random_instants_always_leave_a_loadable_bundle(tmp_path, world):
    key, archives, folders = world
    target = tmp_path / "model"
    shutil.copytree(folders[1], target)  # starts plain: the first installs migrate it
    rng = random.Random(14)
    seen, mid_install = [], 0
    for _ in range(20):
        child = subprocess.Popen([sys.executable, "-c", _LOOP_CHILD, str(target), key,
                                  str(archives[2]), str(archives[3])],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, "the install loop ended by itself"
        bundle = load_bundle(target, public_key=key)
        seen.append(bundle.version)
        mid_install += bool(_leftovers(target))  # killed with a staging or trash folder open
        versions = target / VERSIONS_DIR
        # Leftovers never pile up: live, previous, at most one staged and one being deleted.
        assert not versions.exists() or len(list(versions.iterdir())) <= 4
    assert set(seen) <= {1, 2, 3} and len(set(seen)) > 1, seen
    assert mid_install > 0  # the kills did land inside installs, not only between them
    _assert_serves(target, key, seen[-1])
    clean_bundle_root(target)
    assert _leftovers(target) == []


def test_cleanup_leaves_an_install_in_progress_alone(tmp_path, world):
    key, archives, _ = world
    target = _root_on(tmp_path, world, 1, 2)
    assert resolve_bundle(target) != target  # a root: installs stage inside it
    gate = tmp_path / "go"
    code = _INSTALL_CHILD.replace("def crash(name):", f"""def crash(name):
    if name == "staged":
        open({str(tmp_path / 'staged')!r}, "w").close()
        while not os.path.exists({str(gate)!r}):
            import time; time.sleep(0.01)""")
    child = subprocess.Popen([sys.executable, "-c", code, "none", str(archives[3]), str(target),
                              key, "2"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "staged").exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr
        time.sleep(0.01)
    staging = [p for p in (target / VERSIONS_DIR).iterdir() if p.name.startswith(".incoming-")]
    assert len(staging) == 1
    assert clean_bundle_root(target) == 0  # the installer holds the root's lock
    assert staging[0].is_dir()
    gate.touch()
    assert child.wait(timeout=30) == 0, child.stderr
    _assert_serves(target, key, 3)
    assert _leftovers(target) == []
