"""``anyllm-sidecar`` / ``python -m sidecar``: parse flags, load configuration, run."""

from __future__ import annotations

import argparse
import sys

import msgspec
import uvloop

from sidecar import logs
from sidecar.app import serve
from sidecar.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anyllm-sidecar",
        description="LLM sidecar: Anthropic Messages API over gRPC and HTTP, with fallback.",
    )
    parser.add_argument("--config", help="YAML configuration file (default: $ANYLLM_CONFIG)")
    parser.add_argument("--http", help="HTTP listen address, host:port (overrides the config)")
    parser.add_argument("--grpc", help="gRPC listen address, host:port (overrides the config)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"anyllm-sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("http", args.http), ("grpc", args.grpc)) if v}
    if overrides:
        config = config.with_server(msgspec.structs.replace(config.server, **overrides))
    logs.configure(args.log_level or config.log.level)
    return uvloop.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
