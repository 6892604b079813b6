# cs-pulse service image: worker, simulator, replay and webhook receiver share it.
# Build stage: the wheel, with the core compiled by mypyc (needs a C compiler; setup.py).
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
# schemas/ is package data: service/cs_pulse/schemas links to it, and the wheel carries a copy
# (importlib.resources).
COPY service ./service
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 cspulse \
    && mkdir -p /history /var/lib/cs-pulse/webhook-spool \
    && chown -R cspulse /history /var/lib/cs-pulse
USER cspulse
EXPOSE 9464 8088
ENTRYPOINT ["cs-pulse"]
CMD ["worker"]
