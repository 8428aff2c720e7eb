"""Start PedagogiskDialog: ``python app.py [--host H] [--port P] [--share]``.

Wires the settings, the data directory, the first admin account and the web
application together, then serves it with uvicorn.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

from pipeline import allocator
from pipeline.config import Settings
from pipeline.errors import PedagogiskError
from pipeline.storage import Store

log = logging.getLogger("pedagogiskdialog")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Starta PedagogiskDialog.")
    parser.add_argument("--host", default="127.0.0.1", help="standard: 127.0.0.1")
    parser.add_argument("--port", type=int, default=7860, help="standard: 7860")
    parser.add_argument(
        "--share",
        action="store_true",
        help="öppna också en publik länk via Gradios delningstjänst (kräver internet)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except PedagogiskError as exc:
        print(f"fel: {exc.message}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    allocator.tune(settings.memory_budget_mb)
    # Gradio's own telemetry would try the network at every start, and its
    # temporary files belong in the data directory, emptied at each start.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gradio_tmp = settings.data_dir / "tmp" / "gradio"
    shutil.rmtree(gradio_tmp, ignore_errors=True)
    gradio_tmp.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_tmp)

    import uvicorn

    from web import accounts, tunnel
    from web.server import create_app

    with Store(settings.data_dir) as store:
        password = accounts.ensure_admin(store, settings.admin_password or None)
    if password:
        print(
            f"Första start: kontot 'admin' skapades med lösenordet {password}\n"
            "Spara det nu; det visas inte igen. Byt det med"
            " 'python -m web.accounts set-password admin'.",
            flush=True,
        )
    app = create_app(settings)
    print(
        f"PedagogiskDialog: logga in på http://{args.host}:{args.port}/login",
        flush=True,
    )
    # Behind a proxy (Render) the client address comes from X-Forwarded-For;
    # FORWARDED_ALLOW_IPS says which proxies to believe (login rate limits).
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )
    server = uvicorn.Server(config)
    if args.share:
        tunnel.open_when_started(server, args.host, args.port)
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
