"""The floor for the serving benchmark: the same stack reading the same upload, no model.

FastAPI under the same uvicorn settings, a POST /predict that reads the multipart field `file`
like the real service does and answers constant JSON shaped like a prediction.
"""

from typing import Annotated

from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

app = FastAPI()
_CONSTANT = {"class": 0, "confidence": 1.0, "scores": [1.0] + [0.0] * 9}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()]) -> JSONResponse:
    await file.read()
    return JSONResponse(_CONSTANT)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
