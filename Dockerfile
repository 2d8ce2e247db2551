# fax-gateway: email-to-fax gateway for the eFax Enterprise API.
# Build: docker build -t fax-gateway .   Run: docker run -p 2525:2525 -v faxgw:/data fax-gateway
FROM python:3.11-slim

# LibreOffice converts office documents (DOCX, XLSX, ODT, RTF ...) to PDF before faxing.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libreoffice-writer-nogui libreoffice-calc-nogui \
        libreoffice-impress-nogui fonts-dejavu-core curl \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv

RUN useradd --create-home --home-dir /home/faxgw --uid 10001 faxgw \
 && mkdir -p /data && chown faxgw:faxgw /data
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY gateway ./gateway
COPY config ./config
RUN uv sync --locked --no-dev --no-cache && chown -R faxgw:faxgw /app

USER faxgw
VOLUME ["/data"]
ENV FAXGW_SMTP__LISTEN=0.0.0.0:2525 \
    FAXGW_HTTP__LISTEN=0.0.0.0:8025 \
    FAXGW_DATABASE__URL=sqlite:////data/gateway.db \
    FAXGW_RELAY__MAILDIR=/data/mail \
    FAXGW_SMTP__TRUSTED_NETWORKS='["127.0.0.0/8","::1/128"]'
EXPOSE 2525 8025
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD curl -fsS http://127.0.0.1:8025/healthz || exit 1
ENTRYPOINT ["/app/.venv/bin/fax-gateway"]
CMD ["serve"]
