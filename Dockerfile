# cs-pulse service image: worker, simulator, replay and webhook receiver share it.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CS_PULSE_SCHEMAS=/app/schemas
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY schemas ./schemas
RUN pip install . && useradd --system --uid 10001 cspulse && mkdir /history && chown cspulse /history
USER cspulse
EXPOSE 9464 8088
ENTRYPOINT ["cs-pulse"]
CMD ["worker"]
