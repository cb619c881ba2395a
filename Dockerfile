FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventsvc eventsvc
COPY projections projections
COPY bench bench
RUN pip install --no-cache-dir ".[all]"
ENV EVENTSVC_DATA_DIR=/data
ENTRYPOINT ["eventsvc"]
