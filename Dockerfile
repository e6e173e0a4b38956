# A backend in a container. The servers need only the standard library.
#   docker build -t concurbench .
#   docker run --rm -p 8000:8000 concurbench --backend selectors
# The image binds 0.0.0.0: inside a container, 127.0.0.1 is the container's own
# loopback, so a server bound there cannot be reached through the published port.
FROM python:3.11-slim
WORKDIR /app
COPY servers ./servers
RUN useradd --system --no-create-home concurbench
USER concurbench
EXPOSE 8000
ENTRYPOINT ["python", "-m", "servers", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--backend", "asyncio"]
