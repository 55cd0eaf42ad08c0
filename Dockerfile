# grpc-emulator image.
#
#   docker build -t grpc-emulator .
#   docker run --rm -p 127.0.0.1:50051:50051 -p 127.0.0.1:8080:8080 \
#       -v "$PWD/protos:/protos:ro" -v "$PWD/behaviors:/behaviors:ro" grpc-emulator
#
# 50051: the emulated services and the gRPC admin API; 8080: the admin API as JSON over HTTP
# (admin.http_port in deploy/container/emulator.yaml; set EMULATOR_ADMIN_TOKEN on shared networks).
#
# Air-gapped: when the build context holds a wheels/ folder (the project's dependencies and
# setuptools, as wheels for the base image's Python), pip installs only from it, never from an
# index. BASE_IMAGE may be any Debian-like image with python3 (3.11+) and its venv module.
ARG BASE_IMAGE=python:3.12-slim

# ---- build: the emulator wheel (and any dependency that lacks one), installed into a venv ----
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . .
RUN set -eu; \
    if ls wheels/*.whl >/dev/null 2>&1; then \
        echo "wheels/ found: installing only from it, no package index"; \
        set -- --no-index --find-links /src/wheels; \
    else \
        set --; \
    fi; \
    python3 -m venv /opt/emulator; \
    /opt/emulator/bin/pip wheel --no-cache-dir "$@" --wheel-dir /tmp/dist "/src[telemetry]"; \
    /opt/emulator/bin/pip install --no-cache-dir --no-index --find-links /tmp/dist \
        "$(ls /tmp/dist/grpc_emulator-*.whl)[telemetry]"; \
    # The file watcher of `reload: true` (3 MB with anyio) stays out: an image's contracts are
    # reloaded by SIGHUP (`docker kill -s HUP`) or the admin API's Reload instead.
    /opt/emulator/bin/pip uninstall --yes --quiet pip setuptools watchfiles anyio sniffio; \
    # Sources of compiled extensions (.c, .pyx, .pxd, .h) and type stubs run nothing here; and
    # optional speedups (11 MB, unstripped) of paths the emulator does not need fast: aiohttp's
    # HTTP parsers and writer and its multidict, propcache and frozenlist (the admin API's HTTP
    # door) and libyaml (config and stub files are read once). Each library falls back to its
    # Python code when these are missing; this keeps the image under 200 MB.
    find /opt/emulator/lib \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' \
        -o -name '*.pyi' -o -path '*/aiohttp/_http_parser.*.so' \
        -o -path '*/aiohttp/_websocket/reader_c.*.so' -o -path '*/yaml/_yaml.*.so' \
        -o -path '*/aiohttp/_http_writer.*.so' -o -path '*/multidict/_multidict.*.so' \
        -o -path '*/propcache/_helpers_c.*.so' -o -path '*/frozenlist/_frozenlist.*.so' \) \
        -type f -delete; \
    # Compiled bytecode of packages no plain start imports, only a feature that is configured
    # (telemetry, JWT and TLS material, templates, recording, contracts with validation rules):
    # they compile when first imported instead (a start that uses them pays tens of ms), which
    # keeps the image under 200 MB with the validation engine (10 MB).
    cd /opt/emulator/lib/python3*/site-packages; \
    for package in opentelemetry prometheus_client cryptography cffi pycparser jinja2 \
        protovalidate protobuf protobuf_ext google/api google/type google/longrunning \
        emulator/record emulator/report emulator/telemetry emulator/validation; do \
        find "$package" -name __pycache__ -type d -prune -exec rm -rf {} +; \
    done; \
    cd /; \
    /opt/emulator/bin/emulate --help >/dev/null

# ---- final: the base image, the venv and a non-root user; no compiler, no pip ----
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="grpc-emulator" \
      org.opencontainers.image.description="gRPC service emulator serving .proto contracts" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN set -eu; \
    useradd --system --uid 10001 --user-group --create-home --home-dir /home/emulator \
        --shell /usr/sbin/nologin emulator; \
    mkdir -p /protos /behaviors /stubs
COPY --from=build /opt/emulator /opt/emulator
COPY deploy/container/emulator.yaml /etc/emulator/emulator.yaml
# Settings: /etc/emulator/emulator.yaml, then EMULATOR_* variables, then flags after the image.
ENV PATH=/opt/emulator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EMULATOR_CONFIG=/etc/emulator/emulator.yaml \
    EMULATOR_HOST=0.0.0.0 \
    EMULATOR_LOG_STREAM=stdout
USER 10001:10001
WORKDIR /home/emulator
EXPOSE 50051 8080
# Plaintext only: with TLS, override it (docker run --health-cmd, compose healthcheck:) adding
# emulate health's --tls-ca/--tls-cert/--tls-key flags.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "exec emulate health --timeout 3s --target 127.0.0.1:${EMULATOR_PORT:-${EMULATOR_SERVER_PORT:-50051}}"]
ENTRYPOINT ["emulate"]
