"""`python -m app`: serve with the production server settings (app/http/server.py).

With several workers the metrics go through prometheus-client's multiprocess mode, and a
worker that fails to start (bad weights, say) stops the whole server with a non-zero exit.
"""

import logging
import os
import shutil
import signal
import sys
import tempfile

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from app.http.server import raise_descriptor_limit, uvicorn_config
from app.observability.logs import configure_logging
from app.observability.metrics import MULTIPROCESS_ENV
from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    raise_descriptor_limit(settings.max_connections)
    config = uvicorn_config(settings)
    if settings.workers == 1:
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    return _run_workers(config)


def _run_workers(config: uvicorn.Config) -> int:
    owns_metrics_dir = MULTIPROCESS_ENV not in os.environ
    if owns_metrics_dir:
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="mnist-serve-metrics-")
    try:
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
        return STARTUP_FAILURE if failed else 0
    finally:
        if owns_metrics_dir:
            shutil.rmtree(os.environ[MULTIPROCESS_ENV], ignore_errors=True)


if __name__ == "__main__":
    try:
        status = main()
    except KeyboardInterrupt:  # Ctrl+C: uvicorn shut down cleanly, then raised SIGINT again
        status = 128 + signal.SIGINT
    # Everything has shut down and been logged. The interpreter's own teardown would add about
    # 2 s of garbage collection over torch's objects to every exit (and to every docker stop).
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)
