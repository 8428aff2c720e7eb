# PedagogiskDialog for a small server (Render: 512 MB RAM, persistent disk at /data).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PD_DATA_DIR=/data \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY app.py ./
COPY pipeline ./pipeline
COPY models ./models
COPY web ./web

RUN useradd --create-home --uid 10001 pd \
    && mkdir -p /data && chown pd:pd /data
USER pd
VOLUME ["/data"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=2).status == 200 else 1)"

CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
