"""``FileSession``: one file per session, shared by every worker on the host.

Layout in ``storage_path``: ``session-<id>`` holds the record, written
atomically (temporary file + rename); its modification time *is* the
expiration time, so refreshing the expiry is a ``utime`` and never a
rewrite. ``session-<id>.lock`` is the ``fcntl`` lock; its holder removes it
on release, so lock files never pile up (clean-up removes those left by a
crashed process).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from typing import Any

from .base import Session, valid_id

PREFIX = "session-"
LOCK_SUFFIX = ".lock"
TEMP_PREFIX = ".tmp-"
# Marks the last clean-up, and is locked while one runs, so one worker cleans.
CLEAN_UP_MARK = ".clean-up"
_NO_STORAGE_PATH = (
    "tools.sessions.storage_type 'file' needs tools.sessions.storage_path "
    "(the directory holding the session files)"
)
# Temporary files older than this were left by a crash.
_STALE_TEMP_SECONDS = 3600


def _try_lock(lock_path: str) -> int | None:
    """An fd holding an exclusive lock on ``lock_path``, or None if someone else has it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # The holder may have removed the file while we opened it: then our lock
    # is on a dead inode and a newcomer could lock a new file. Start over.
    try:
        current = os.stat(lock_path).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(fd).st_ino:
        os.close(fd)
        return _try_lock(lock_path)
    return fd


def _unlock(fd: int, lock_path: str) -> None:
    """Release a lock taken by :func:`_try_lock` and remove its file.

    Removing it while still holding it is safe: whoever waits on the old
    file sees the inode change in :func:`_try_lock` and starts over. So lock
    files exist only while someone holds them.
    """
    try:
        os.unlink(lock_path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)  # closing releases the flock


class FileSession(Session):
    """Sessions as files in ``storage_path`` (required), safe across processes."""

    storage_path: str | None = None
    #: The file names' prefix and the lock files' suffix (CherryPy's names for them).
    SESSION_PREFIX = PREFIX
    LOCK_SUFFIX = LOCK_SUFFIX

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:
        storage_path = kwargs.get("storage_path", self.storage_path)
        if not storage_path:
            raise ValueError(_NO_STORAGE_PATH)
        os.makedirs(storage_path, mode=0o700, exist_ok=True)
        self._lock_fd: int | None = None
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check that ``storage_path`` is given and usable (it is made if missing)."""
        super().setup(**kwargs)
        storage_path = kwargs.get("storage_path", cls.storage_path)
        if not storage_path:
            raise ValueError(_NO_STORAGE_PATH)
        try:
            os.makedirs(storage_path, mode=0o700, exist_ok=True)
            if not os.access(storage_path, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError("not readable and writable by this process")
        except OSError as exc:
            raise ValueError(
                f"tools.sessions.storage_path {str(storage_path)!r} cannot be used: "
                f"{exc.strerror or exc}"
            ) from exc

    def _data_path(self, session_id: str | None = None) -> str:
        # Ids are format-checked before we get here: no path injection.
        return os.path.join(self.storage_path, PREFIX + (session_id or self.id))  # type: ignore[arg-type]

    def _exists(self) -> bool:
        try:
            return os.stat(self._data_path()).st_mtime >= time.time()
        except FileNotFoundError:
            return False

    def _load(self) -> tuple[bytes, float] | None:
        try:
            with open(self._data_path(), "rb") as f:
                return f.read(), os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None

    def _save(self, record: bytes, expiration_time: float) -> None:
        fd, temp_path = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.storage_path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(record)
            os.utime(temp_path, (expiration_time, expiration_time))
            os.replace(temp_path, self._data_path())
        except BaseException:
            try:
                os.unlink(temp_path)
            except FileNotFoundError:
                pass
            raise

    def _touch(self, expiration_time: float) -> None:
        try:
            os.utime(self._data_path(), (expiration_time, expiration_time))
        except FileNotFoundError:
            pass

    def _delete(self) -> None:
        try:
            os.unlink(self._data_path())
        except FileNotFoundError:
            pass

    def _apply(
        self, changed: dict[str, str], deleted: set[str], created: float, expiration_time: float
    ) -> bool:
        """Read, merge and write under the session lock, held only that long.

        A busy lock is a conflict: the caller retries with a pause. After an
        explicit ``acquire_lock`` the lock is already ours.
        """
        lock_path = self._data_path() + LOCK_SUFFIX
        fd = None
        if not self.locked:
            fd = _try_lock(lock_path)
            if fd is None:
                return False
        try:
            record = self._merged_record(self._load(), changed, deleted, created)
            self._save(record, expiration_time)
        finally:
            if fd is not None:
                _unlock(fd, lock_path)
        return True

    def acquire_lock(self) -> None:
        if self.locked:  # already ours (e.g. locking="early" plus an explicit call)
            return
        lock_path = self._data_path() + LOCK_SUFFIX
        self._lock_fd = self.wait_for_lock(lambda: _try_lock(lock_path))
        self.locked = True

    def release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        self.locked = False
        if fd is not None:
            _unlock(fd, self._data_path() + LOCK_SUFFIX)

    def clean_up(self) -> None:
        """Remove expired sessions, their locks, orphan locks and stale temp files.

        Runs in one worker at a time, at most every ``clean_freq`` minutes
        for the whole storage directory.
        """
        directory = self.storage_path
        mark = os.path.join(directory, CLEAN_UP_MARK)  # type: ignore[arg-type]
        mark_fd = _try_lock(mark)
        if mark_fd is None:
            return  # another worker is cleaning right now
        try:
            now = time.time()
            mark_stat = os.fstat(mark_fd)
            # An empty mark was just created: nobody has cleaned yet.
            if mark_stat.st_size and mark_stat.st_mtime > now - self.clean_freq * 60 + 1:
                return  # another worker cleaned recently
            if not mark_stat.st_size:
                os.write(mark_fd, b"1")
            os.utime(mark_fd)
            for name in os.listdir(directory):  # type: ignore[arg-type]
                path = os.path.join(directory, name)  # type: ignore[arg-type]
                if name.startswith(TEMP_PREFIX):
                    self._remove_if_older(path, now - _STALE_TEMP_SECONDS)
                elif name.startswith(PREFIX):
                    data_path = path.removesuffix(LOCK_SUFFIX)
                    self._clean_session(data_path, now)
        finally:
            os.close(mark_fd)

    @staticmethod
    def _remove_if_older(path: str, limit: float) -> None:
        try:
            if os.stat(path).st_mtime < limit:
                os.unlink(path)
        except FileNotFoundError:
            pass

    @staticmethod
    def _clean_session(data_path: str, now: float) -> None:
        """Delete an expired session under its lock; unlocking drops the lock file."""
        lock_path = data_path + LOCK_SUFFIX
        try:
            expired = os.stat(data_path).st_mtime < now
        except FileNotFoundError:
            expired = os.path.exists(lock_path)  # a lock without data: left by a crash
        if not expired:
            return
        fd = _try_lock(lock_path)
        if fd is None:
            return  # in use: a request will save or remove it
        try:
            if os.stat(data_path).st_mtime < now:
                os.unlink(data_path)
        except FileNotFoundError:
            pass
        _unlock(fd, lock_path)

    def __len__(self) -> int:
        """Live sessions: expired files waiting for clean-up do not count."""
        now = time.time()
        count = 0
        for name in os.listdir(self.storage_path):  # type: ignore[arg-type]
            session_id = name.removeprefix(PREFIX)
            if session_id == name or not valid_id(session_id):
                continue  # a lock, temporary or foreign file
            try:
                count += os.stat(self._data_path(session_id)).st_mtime >= now
            except FileNotFoundError:
                pass  # removed meanwhile
        return count
