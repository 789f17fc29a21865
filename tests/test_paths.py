"""Where chanctl puts its files, and the checks that keep other users out of them.

Guards cli.md 2.1's traps: a missing or foreign XDG_RUNTIME_DIR falls back to a private
/tmp/chanctl-<uid>, socket paths that the kernel would truncate are refused up front, and a
directory we are about to trust is ours, private, and not a symlink planted by someone else.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from daemonkit import TestEnv

from chanctl import paths
from chanctl.errors import ConfigError, UnsafePath

NOBODY = 65534


def test_runtime_dir_from_xdg(tenv: TestEnv) -> None:
    assert paths.runtime_dir() == tenv.root / "run" / "chanctl"
    assert paths.socket_path() == tenv.root / "run" / "chanctl" / "chanctl.sock"


def test_runtime_dir_fallback_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert paths.runtime_dir() == Path(f"/tmp/chanctl-{os.getuid()}")


def test_runtime_dir_fallback_when_missing(tenv: TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tenv.root / "gone"))
    assert paths.runtime_dir() == Path(f"/tmp/chanctl-{os.getuid()}")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
def test_runtime_dir_fallback_when_foreign(tenv: TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = tenv.root / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, NOBODY, NOBODY)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(foreign))
    assert paths.runtime_dir() == Path(f"/tmp/chanctl-{os.getuid()}")


def test_sidecar_files_sit_beside_the_socket() -> None:
    sock = Path("/run/user/1/chanctl/chanctl.sock")
    assert paths.lock_file(sock) == sock.with_name("chanctl.lock")
    assert paths.pid_file(sock) == sock.with_name("chanctl.pid")


def test_socket_env_overrides(tenv: TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANCTL_URL", "unix:///tmp/from-url.sock")
    assert paths.socket_path() == Path("/tmp/from-url.sock")
    monkeypatch.setenv("CHANCTL_SOCKET", "/tmp/from-env.sock")
    assert paths.socket_path() == Path("/tmp/from-env.sock")


def test_socket_path_length_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = "/tmp/" + "a" * (paths.MAX_SOCKET_PATH_BYTES - 5)
    assert paths.check_socket_path(Path(ok)) == Path(ok)
    monkeypatch.setenv("CHANCTL_SOCKET", ok + "b")
    with pytest.raises(ConfigError) as err:
        paths.socket_path()
    assert err.value.hint and "shorter path" in err.value.hint


def test_user_dirs_follow_xdg(tenv: TestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.data_dir() == tenv.data_dir
    assert paths.log_file() == tenv.log_file
    assert paths.token_file() == tenv.token_file
    monkeypatch.setenv("CHANCTL_DATA_DIR", str(tenv.root / "mine"))
    assert paths.data_dir() == tenv.root / "mine"


def test_private_dir_created_0700_under_umask_0(tenv: TestEnv) -> None:
    old = os.umask(0)
    try:
        made = paths.ensure_private_dir(tenv.root / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700


def test_private_dir_tightened(tenv: TestEnv) -> None:
    loose = tenv.root / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    paths.ensure_private_dir(loose)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700


def test_private_dir_refuses_symlink(tenv: TestEnv) -> None:
    real = tenv.root / "real"
    real.mkdir(mode=0o700)
    link = tenv.root / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafePath, match="symlink"):
        paths.ensure_private_dir(link)


def test_private_dir_refuses_sticky_shared_dir(tenv: TestEnv) -> None:
    shared = tenv.root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(UnsafePath, match="shared directory"):
        paths.ensure_private_dir(shared)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777, "must not be changed"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown")
def test_private_dir_refuses_foreign_owner(tenv: TestEnv) -> None:
    foreign = tenv.root / "foreign"
    foreign.mkdir(mode=0o755)
    os.chown(foreign, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        paths.ensure_private_dir(foreign)
    assert stat.S_IMODE(os.stat(foreign).st_mode) == 0o755
