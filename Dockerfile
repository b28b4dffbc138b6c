# The gateway image: Python 3.11 slim, dependencies in their own layer, non-root,
# started by gunicorn exactly as tests/test_container_cmd.py starts it.

FROM python:3.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A venv copied whole into the runtime stage: pip's caches and any build leftovers stay here.
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every runtime dependency ships a manylinux wheel for 3.11: refuse a source build,
# which would need a compiler the image does not have.
RUN /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent gateway
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY app ./app
# Bytecode compiled at build time: cold starts import without compiling (and never write at run time).
RUN python -m compileall -q app gunicorn.conf.py
USER 10001:10001
EXPOSE 8080
# gunicorn.conf.py binds 0.0.0.0:$PORT and holds the Cloud Run tuning.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app.main:app"]
