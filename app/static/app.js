// The drawing page: strokes on a canvas, posted as a PNG file to /predict exactly as
// `curl -F file=@digit.png` would, so the server's real preprocessing does the work.
"use strict";

const BRUSH_WIDTH = 22;
const canvas = document.getElementById("pad");
const context = canvas.getContext("2d");
const clearButton = document.getElementById("clear");
const uploadInput = document.getElementById("upload");
const message = document.getElementById("message");
const digit = document.getElementById("digit");
const confidence = document.getElementById("confidence");
const scoresList = document.getElementById("scores");
const uploadedPreview = document.getElementById("uploaded");

let drawing = false;
let hasInk = false;
let requestNumber = 0;

function resetCanvas() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000000";
  context.lineWidth = BRUSH_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  hasInk = false;
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return [
    (event.clientX - box.left) * (canvas.width / box.width),
    (event.clientY - box.top) * (canvas.height / box.height),
  ];
}

// Strokes are lists of [x, y] points in canvas pixels (0-280).
function drawStroke(points) {
  context.beginPath();
  context.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) {
    context.lineTo(x, y);
  }
  if (points.length === 1) {
    context.lineTo(points[0][0] + 0.1, points[0][1]);  // a dot
  }
  context.stroke();
  hasInk = true;
}

function showMessage(text) {
  message.textContent = text;
}

function showEmpty(text) {
  digit.textContent = "–";
  digit.dataset.state = "empty";
  confidence.textContent = text;
  scoresList.replaceChildren();
}

function showPrediction(prediction) {
  digit.textContent = String(prediction.class);
  digit.dataset.state = "shown";
  confidence.textContent = `${(prediction.confidence * 100).toFixed(1)} % sure`;
  scoresList.replaceChildren(...prediction.scores.map((score, value) => {
    const item = document.createElement("li");
    item.className = value === prediction.class ? "best" : "";
    item.setAttribute("aria-label", `${value}: ${(score * 100).toFixed(1)} percent`);
    const label = document.createElement("span");
    label.textContent = String(value);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(score * 100).toFixed(1)}%`;
    bar.append(fill);
    const number = document.createElement("span");
    number.className = "value";
    number.textContent = `${(score * 100).toFixed(1)} %`;
    item.append(label, bar, number);
    return item;
  }));
}

async function predict(file, filename) {
  const thisRequest = ++requestNumber;
  window.digitPad.lastUpload = file;
  const form = new FormData();
  form.append("file", file, filename);
  showMessage("");
  try {
    const response = await fetch("/predict", { method: "POST", body: form });
    const body = await response.json();
    if (thisRequest !== requestNumber) {
      return;  // a newer stroke or upload has been sent since
    }
    if (!response.ok) {
      showEmpty("No prediction.");
      showMessage(body.detail || `The server answered ${response.status}.`);
      return;
    }
    showPrediction(body);
  } catch (error) {
    if (thisRequest === requestNumber) {
      showEmpty("No prediction.");
      showMessage(`Could not reach the server: ${error.message}`);
    }
  } finally {
    if (thisRequest === requestNumber) {
      window.digitPad.completed += 1;
    }
  }
}

function predictCanvas() {
  if (!hasInk) {
    showEmpty("Draw something to see a guess.");
    showMessage("The canvas is empty: draw a digit first.");
    return;
  }
  uploadedPreview.hidden = true;
  canvas.toBlob((blob) => predict(blob, "canvas.png"), "image/png");
}

function clearAll() {
  requestNumber += 1;  // ignore answers still on their way
  resetCanvas();
  uploadedPreview.hidden = true;
  uploadInput.value = "";
  showMessage("");
  showEmpty("Draw something to see a guess.");
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  const [x, y] = canvasPoint(event);
  context.beginPath();
  context.moveTo(x, y);
  context.lineTo(x + 0.1, y);
  context.stroke();
  hasInk = true;
});

canvas.addEventListener("pointermove", (event) => {
  if (!drawing) {
    return;
  }
  const [x, y] = canvasPoint(event);
  context.lineTo(x, y);
  context.stroke();
});

function endStroke() {
  if (drawing) {
    drawing = false;
    predictCanvas();
  }
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

clearButton.addEventListener("click", clearAll);

uploadInput.addEventListener("change", () => {
  const file = uploadInput.files[0];
  if (!file) {
    return;
  }
  uploadedPreview.src = URL.createObjectURL(file);
  uploadedPreview.hidden = false;
  predict(file, file.name);
});

// A small API for tests and curious users: draw strokes and read back what was sent.
window.digitPad = {
  drawStrokes(strokes) {
    for (const stroke of strokes) {
      drawStroke(stroke);
    }
    predictCanvas();
  },
  isBlank() {
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    return pixels.every((value) => value === 255);
  },
  lastUpload: null,
  completed: 0,
};

resetCanvas();
