"""A real Triton Inference Server on this machine, from the `nvidia-pytriton` wheel (`serve`, and the tests).

The wheel ships the `tritonserver` binary, its libraries and the python backend, with a backend stub for each Python
from 3.8 to 3.13. The stub runs a model's `model.py` in the Python it finds first on PATH, whose packages must include
numpy below 2 (with numpy 2 every output comes back empty) and onnxruntime; the stub itself links the system's
libpython of the same version. So the server lives in its own virtual environment (`prepare_env`), apart from ours,
which needs numpy 2.

`TritonServer(repo, grpc_port, http_port)` starts it on 127.0.0.1 (with its own backend folder holding the stub for
that environment's Python), waits until every model is loaded and ready, and stops it on `close()`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import UserError

DEFAULT_ENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stream_predictor" / "triton-env"
PACKAGES = ["nvidia-pytriton", "numpy<2", "onnxruntime"]  # the server, and what the python backend's models import


def prepare_env(env: Path = DEFAULT_ENV, quiet: bool = False) -> Path:
    """A virtual environment at `env` with the server and its models' packages (made once; pip reaches PyPI)."""
    if _server_dir(env) is None:
        print(f"preparing the Triton server's environment in {env} (pip: {', '.join(PACKAGES)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        out = subprocess.DEVNULL if quiet else None
        done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES], stdout=out)
        if done.returncode != 0 or _server_dir(env) is None:
            raise UserError(f"could not install {', '.join(PACKAGES)} into {env} (pip exit {done.returncode})")
    return env


def _server_dir(env: Path) -> Path | None:
    found = glob.glob(str(env / "lib" / "python3.*" / "site-packages" / "pytriton" / "tritonserver" / "bin" / "tritonserver"))
    return Path(found[0]).parents[1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """`with TritonServer(repo, grpc_port=0) as server: …` — a running server; `server.grpc_url` to reach it."""

    def __init__(self, repository: str | Path, grpc_port: int = 8001, http_port: int = 8000, env: Path = DEFAULT_ENV,
                 log_path: str | Path | None = None, ready_s: float = 120.0) -> None:
        self.repository = Path(repository).absolute()
        if not self.repository.is_dir():
            raise UserError(f"no model repository at {repository} (write one with `export --format triton --out DIR`)")
        self.server = _server_dir(Path(env))
        if self.server is None:
            raise UserError(f"no Triton server in {env}: run `stream-predictor serve --prepare` (it installs "
                            f"{', '.join(PACKAGES)} there, apart from this environment)")
        self.env, self.ready_s = Path(env), ready_s
        self.grpc_port, self.http_port = grpc_port or free_port(), http_port or free_port()
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self._work = tempfile.TemporaryDirectory(prefix="sp-triton-")
        self.log_path = Path(log_path) if log_path else Path(self._work.name) / "server.log"
        self.process: subprocess.Popen | None = None

    def _backends(self) -> Path:
        """A backend folder of our own: the wheel's python backend with the stub for the environment's Python beside it
        (made at the first start, kept for restarts)."""
        backends = Path(self._work.name) / "backends"
        if backends.exists():
            return backends
        version = Path(glob.glob(str(self.env / "lib" / "python3.*"))[0]).name.removeprefix("python")
        stub = self.server / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise UserError(f"the Triton wheel in {self.env} has no python backend stub for Python {version}")
        shutil.copytree(self.server / "backends", backends)
        shutil.copy(stub, backends / "python" / stub.name)
        return backends

    def start(self) -> TritonServer:
        libs = self.server.parents[1] / "nvidia_pytriton.libs"
        env = {**os.environ, "PATH": f"{self.env / 'bin'}:{os.environ.get('PATH', '')}",
               "LD_LIBRARY_PATH": ":".join(p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p)}
        cmd = [str(self.server / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={self._backends()}", f"--cache-directory={self.server / 'caches'}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}", "--http-address=127.0.0.1",
               f"--http-port={self.http_port}", "--allow-metrics=false", "--exit-timeout-secs=5", "--log-verbose=0"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        deadline, wait = time.monotonic() + self.ready_s, 0.05
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(wait)  # the server is loading its models; nothing to wait on but its answer
            wait = min(2 * wait, 0.5)
        tail = " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        self.close()
        raise UserError(f"the Triton server did not become ready on {self.repository} (its log: {tail[-600:]})")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`). Idempotent."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._work.cleanup()
