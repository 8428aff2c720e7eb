"""PedagogiskDialog's web app (Gradio). For now a minimal page over the pipeline.

``python app.py [--host H] [--port P]`` starts it.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.config import Settings
from pipeline.storage import Store

log = logging.getLogger(__name__)


def build(settings: Settings):  # type: ignore[no-untyped-def]
    import gradio as gr

    with gr.Blocks(title="PedagogiskDialog") as demo:
        gr.Markdown(
            "# PedagogiskDialog\n"
            "Transkribering av inspelade samtal. Webbgränssnittet byggs just nu;"
            " använd `python -m pipeline transcribe FIL` tills vidare."
        )
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Starta PedagogiskDialog.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    Store(settings.data_dir).close()
    build(settings).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
