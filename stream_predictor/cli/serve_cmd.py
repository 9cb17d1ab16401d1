"""`serve --repository DIR [--grpc-port G] [--http-port H]`: a real Triton Inference Server on 127.0.0.1, in the
foreground, serving a repository written by `export --format triton`; Ctrl-C or SIGTERM stops it.
`serve --prepare` makes the server's own environment first (docs/serving.md)."""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..tools.triton_server import DEFAULT_ENV, TritonServer, prepare_env


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", help="the model repository (export --format triton --out DIR)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port on 127.0.0.1 (0: a free one; default 8001)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port on 127.0.0.1 (0: a free one; default 8000)")
    p.add_argument("--env", default=str(DEFAULT_ENV), help=f"the server's environment (default {DEFAULT_ENV})")
    p.add_argument("--prepare", action="store_true", help="make the server's environment (pip installs the "
                   "nvidia-pytriton wheel with numpy<2 and onnxruntime into --env), then serve if --repository is given")
    p.add_argument("--log", help="the server's log file (default: a temporary one)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    for port in (args.grpc_port, args.http_port):
        if not 0 <= port <= 65535:
            raise UserError(f"a port is between 0 and 65535, not {port}")
    if args.prepare:
        prepare_env(Path(args.env))
        print(json.dumps({"env": args.env, "ready": True}))
        if not args.repository:
            return 0
    if not args.repository:
        raise UserError("serve needs --repository DIR (a model repository from `export --format triton --out DIR`)")
    with TritonServer(args.repository, args.grpc_port, args.http_port, Path(args.env), args.log) as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v2", timeout=5) as r:
            version = json.load(r).get("version", "?")
        models = sorted(p.parent.name for p in Path(args.repository).glob("*/config.pbtxt"))
        print(f"serving {', '.join(models)} from {args.repository} with Triton {version} on grpc {server.grpc_url}, "
              f"http 127.0.0.1:{server.http_port} (Ctrl-C stops)", flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
            pass
        if not server.alive() and server.process.returncode not in (0, None):
            raise UserError(f"the Triton server stopped by itself (exit {server.process.returncode}; log: {server.log_path})")
    return 0
