"""A text env that runs in its own process, so that several envs step at once on several cores.

:class:`SubprocessEnv` is a gymnasium env whose game lives in a worker process: a fresh
interpreter (``python -m londi.envs.worker``) connected by a socket pair, so that no PyTorch or
JVM state is forked and the caller's main module is never imported again (a script needs no
``if __name__ == "__main__"`` guard). ``reset``/``step`` block as usual;
:meth:`SubprocessEnv.step_async` / :meth:`SubprocessEnv.step_wait` (and the ``reset`` pair) let a
caller start the steps of several envs and then collect them, which is how
:class:`~londi.switch.vector.SwitchEnvBatch` (``--env-workers``) plays pure-Python games such as
BabyAI-Text on all cores while the LMs run in the main process.

Attribute reads that the switch makes on the unwrapped env (``max_steps``, ``current_level``,
``task``, ...) are answered by the worker. A string action is mapped to the game's index there
(``action_index``), so each step is one round trip. An exception in the worker is raised again
here with its type, and a worker that died raises :class:`~londi.core.errors.EnvCrashError`
(which the switch tolerates: the episode is truncated).
"""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym

from londi.core.errors import EnvCrashError

#: Attribute names that are never looked up in the worker.
_LOCAL = frozenset({"action_index"})


def _worker(conn: Any) -> None:
    from londi.envs import make_env

    try:
        env_id, kwargs = conn.recv()
        env = make_env(env_id, **kwargs)
        conn.send(("ok", (env.observation_space, env.action_space)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", _portable(exc)))
        return
    base = env.unwrapped
    while True:
        try:
            command, payload = conn.recv()
        except EOFError:
            break
        try:
            if command == "step":
                action = payload
                if isinstance(action, str) and hasattr(base, "action_index"):
                    action = base.action_index(action)
                result: Any = env.step(action)
            elif command == "reset":
                result = env.reset(**payload)
            elif command == "getattr":
                value = getattr(base, payload)
                result = None if callable(value) else value
            elif command == "close":
                env.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", result))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send(("error", _portable(exc)))
    conn.close()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles, else a RuntimeError carrying its type, message and traceback."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RuntimeError(f"{type(exc).__name__} in the env worker: {exc}\n{text}")


class SubprocessEnv(gym.Env):
    """``make_env(env_id, **kwargs)`` in a worker process.

    Args:
        env_id: a registered env id (``londi envs``).
        **kwargs: passed to :func:`~londi.envs.make_env` in the worker.
    """

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the game needs no BLAS threads
        try:
            self._process = subprocess.Popen([sys.executable, "-m", "londi.envs.worker", str(child.fileno())],
                                             pass_fds=[child.fileno()], env=env)
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self.env_id = env_id
        self._waiting = False
        self._closed = False
        self._spaces: tuple[Any, Any] | None = None
        # the worker builds the game while the caller goes on (several workers start at once);
        # its spaces are collected before the first call
        self._conn.send((env_id, dict(kwargs)))
        self._waiting = True

    def _ready(self) -> tuple[Any, Any]:
        if self._spaces is None:
            self._spaces = self._receive()
        return self._spaces

    @property
    def observation_space(self) -> Any:  # type: ignore[override]
        return self._ready()[0]

    @property
    def action_space(self) -> Any:  # type: ignore[override]
        return self._ready()[1]

    # ------------------------------------------------------------------ the round trip
    def _send(self, command: str, payload: Any = None) -> None:
        if self._closed:
            raise RuntimeError(f"{self.env_id}: the env was closed")
        self._ready()
        if self._waiting:
            raise RuntimeError(f"{self.env_id}: a call is in flight; collect it first")
        try:
            self._conn.send((command, payload))
        except (BrokenPipeError, OSError) as exc:
            raise EnvCrashError(f"{self.env_id}: the env worker is gone ({exc})") from exc
        self._waiting = True

    def _receive(self) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise EnvCrashError(f"{self.env_id}: the env worker died (exit code {self._process.poll()})") from exc
        finally:
            self._waiting = False
        if status == "error":
            raise value
        return value

    # ------------------------------------------------------------------ gym API
    def reset_async(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._send("reset", {"seed": seed, "options": options})

    def reset_wait(self) -> tuple[Any, dict[str, Any]]:
        return self._receive()

    def step_async(self, action: Any) -> None:
        self._send("step", action)

    def step_wait(self) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return self._receive()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def step(self, action: Any):
        self.step_async(action)
        return self.step_wait()

    def __getattr__(self, name: str) -> Any:
        # only reached for names this object lacks: the unwrapped game's attributes
        if name.startswith("_") or name in _LOCAL:
            raise AttributeError(name)
        self._send("getattr", name)
        return self._receive()

    @property
    def unwrapped(self) -> SubprocessEnv:
        return self

    def close(self) -> None:
        if self._closed:
            return
        self._closed_cleanly = False
        try:
            if self._waiting:
                self._receive()
            self._send("close")
            self._receive()
            self._closed_cleanly = True
        except Exception:  # noqa: BLE001 - closing a dead worker is not an error
            pass
        finally:
            self._closed = True
            self._conn.close()
            # the worker exits on its own once it has closed the game (the subprocess module
            # reaps it); one that is stuck is killed
            if self._process.poll() is None and self._process.returncode is None and not self._closed_cleanly:
                self._process.kill()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


__all__ = ["SubprocessEnv"]


if __name__ == "__main__":  # the worker: python -m londi.envs.worker FD
    _worker(Connection(int(sys.argv[1])))
