# cs-pulse service image: worker, simulator, replay and webhook receiver share it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
# schemas/ is package data: service/cs_pulse/schemas links to it, and `pip install .` copies it
# into the installed package (importlib.resources).
COPY service ./service
COPY schemas ./schemas
RUN pip install . && useradd --system --uid 10001 cspulse && mkdir /history && chown cspulse /history
USER cspulse
EXPOSE 9464 8088
ENTRYPOINT ["cs-pulse"]
CMD ["worker"]
