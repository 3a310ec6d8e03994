"""`headcls serve`: load the model once, listen, and serve the app until SIGTERM or Ctrl-C."""

from __future__ import annotations

import os

from headcls.errors import HeadclsError
from headcls.options.commands import ServeConfig

API_KEY_ENV = "HEADCLS_API_KEY"


def read_api_key(cfg: ServeConfig) -> str | None:
    """The key from --api-key-file (its first line) or HEADCLS_API_KEY; None: the API is open."""
    if cfg.api_key_file:
        try:
            with open(cfg.api_key_file, encoding="utf-8") as f:
                key = f.readline().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise HeadclsError(f"--api-key-file {cfg.api_key_file}: cannot be read ({e})") from None
        if not key:
            raise HeadclsError(f"--api-key-file {cfg.api_key_file}: the first line holds no key")
        return key
    return os.environ.get(API_KEY_ENV) or None


def serve(cfg: ServeConfig) -> None:
    """Load the model once and serve it until SIGTERM or Ctrl-C; both finish the requests in flight first.

    uvicorn handles both signals itself, then raises the signal again: the caller decides what it means (the CLI
    exits 0 after SIGTERM, 130 after Ctrl-C; see headcls.cli.process.remember_signals).
    """
    try:
        import uvicorn
    except ImportError:
        raise HeadclsError("serve needs FastAPI and uvicorn: pip install 'headcls[serve]'") from None
    from headcls.inference.classifier import Classifier
    from headcls.serving.app import create_app

    api_key = read_api_key(cfg)
    sock = _bind(cfg)  # a taken port fails before the model loads
    try:
        classifier = Classifier.from_config(cfg)
    except BaseException:
        sock.close()
        raise
    app = create_app(classifier, cfg, api_key)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=30,
                            access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise HeadclsError(f"the server did not start on {cfg.host}:{cfg.port}")


def _bind(cfg: ServeConfig):
    """The listening socket, opened here so that a taken port is one line and port 0 can be printed."""
    import socket

    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say TCP,
    # and without it every keep-alive response waits ~40 ms for the client's delayed ACK (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        sock.close()
        raise HeadclsError(f"--host {cfg.host} --port {cfg.port}: cannot listen there ({e.strerror})") from None
    except socket.gaierror as e:
        sock.close()
        raise HeadclsError(f"--host {cfg.host}: not an address of this machine ({e})") from None
    sock.listen(2048)  # connections wait in the backlog until the app is up, rather than being refused
    host, port = sock.getsockname()[:2]
    print(f"headcls: serving on http://{host}:{port}/ once the model is loaded (GET /readyz); Ctrl-C or SIGTERM "
          "stops", flush=True)
    return sock
