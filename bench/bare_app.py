"""The floor for the serving benchmark: the same server reading the same upload, no model.

FastAPI under the service's own production server (app/http/server.py, run with the same
settings), a POST /predict that reads the multipart field `file` with FastAPI's own form
parsing and answers constant JSON shaped like a prediction: `python -m bench.bare_app`.
"""

import sys
from typing import Annotated

from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from app.http.server import run
from app.settings import Settings

app = FastAPI()
_CONSTANT = {"class": 0, "confidence": 1.0, "scores": [1.0] + [0.0] * 9, "model": "bare", "version": 1}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> JSONResponse:
    await file.read()
    return JSONResponse(_CONSTANT)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


if __name__ == "__main__":
    sys.exit(run(Settings.from_env(), "bench.bare_app:app", factory=False))
