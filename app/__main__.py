"""`python -m app`: serve with the production server settings (app/http/server.py)."""

import logging
import os
import signal
import sys

from app.http.server import run
from app.observability.logs import configure_logging
from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    return run(settings)


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
