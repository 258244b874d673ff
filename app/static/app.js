// The drawing page: strokes on a canvas, posted as a PNG file to /predict exactly as
// `curl -F file=@digit.png` would, so the server's real preprocessing does the work.
"use strict";

const BRUSH_WIDTH = 22;
// How long the pen must stay up before the drawing is judged. People lift the pen for a few
// hundred milliseconds between the strokes of one digit (the bar of a 7, the two parts of a 4);
// 700 ms waits that out, so a two-stroke 7 is not judged as its bar alone, and still answers
// about when the eye moves from the pen to the result.
const STROKE_PAUSE_MS = 700;
// Pictures over the server's upload limit are redrawn to fit this many pixels on their long
// side (halving, down to 128, until the re-encoded file fits). The server reduces every image to
// 28x28, so 1024 px loses nothing it uses, and a 12-megapixel phone photo becomes a JPEG of
// about 100 to 300 KiB, at a quality high enough to keep the strokes' edges clean.
const SHRINK_TO_PX = 1024;
const SMALLEST_SHRINK_PX = 128;
const JPEG_QUALITY = 0.9;

const canvas = document.getElementById("pad");
const context = canvas.getContext("2d");
const clearButton = document.getElementById("clear");
const uploadInput = document.getElementById("upload");
const message = document.getElementById("message");
const result = document.getElementById("result");
const digit = document.getElementById("digit");
const confidence = document.getElementById("confidence");
const scoresList = document.getElementById("scores");
const uploadedPreview = document.getElementById("uploaded");
const modelChoice = document.getElementById("model");
const answeredBy = document.getElementById("answered-by");
const seenFigure = document.getElementById("seen-figure");
const seenImage = document.getElementById("seen");
const maxUploadBytes = Number(uploadInput.dataset.maxBytes);

let drawing = false;
let hasInk = false;
let pendingPrediction = null;  // the timer that judges the drawing once the pen has rested
let latest = 0;  // bumped by every stroke, upload and Clear: work for an older one is dropped

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

// Starts a new piece of work (a stroke, an upload, Clear): a pending or running prediction for
// the previous state of the page must not overwrite what comes next.
function supersede() {
  clearTimeout(pendingPrediction);
  latest += 1;
  return latest;
}

// While busy, the guess on show is about to be replaced: it is dimmed, and screen readers wait.
function setBusy(busy) {
  result.setAttribute("aria-busy", String(busy));
}

function showMessage(text) {
  message.textContent = text;
}

function showEmpty(text) {
  setBusy(false);
  digit.textContent = "–";
  digit.dataset.state = "empty";
  confidence.textContent = text;
  answeredBy.textContent = "";
  seenFigure.hidden = true;
  scoresList.replaceChildren();
}

// One decimal, but never "100.0 %" nor "0.0 %": a softmax score is never 1 or 0, it only rounds
// there (in the float32 answer too), and a rounded certainty would claim what the model cannot.
function percent(score) {
  const shown = (score * 100).toFixed(1);
  if (shown === "100.0") {
    return "> 99.9 %";
  }
  if (shown === "0.0") {
    return "< 0.1 %";
  }
  return `${shown} %`;
}

function spoken(text) {
  return text.replace("> ", "more than ").replace("< ", "less than ").replace(" %", " percent");
}

// The answer's class, confidence, scores, verdict, who gave it and what the network saw; any
// other field the API adds is not used here. The server decides "not a digit" (the version's
// detector) and "unsure" (its UNSURE_BELOW setting), so the page and the API never disagree.
function showPrediction({ class: best, confidence: bestScore, scores, verdict, model, version, input_image: seen }) {
  setBusy(false);
  answeredBy.textContent = `Answered by ${model}, version ${version}`;
  seenFigure.hidden = typeof seen !== "string";
  if (!seenFigure.hidden) {
    seenImage.src = seen;
  }
  if (verdict === "not_a_digit") {
    digit.textContent = "✗";
    digit.dataset.state = "not-a-digit";
    confidence.textContent = "That does not look like a digit";
  } else if (verdict === "unsure") {
    const ranked = [...scores.keys()].sort((a, b) => scores[b] - scores[a]);
    const runnerUp = ranked.find((value) => value !== best);
    digit.textContent = "?";
    digit.dataset.state = "unsure";
    confidence.textContent = `Not sure: maybe ${best} or ${runnerUp}`;
  } else {
    digit.textContent = String(best);
    digit.dataset.state = "shown";
    confidence.textContent = `${percent(bestScore)} sure`;
  }
  scoresList.replaceChildren(...scores.map((score, value) => {
    const item = document.createElement("li");
    item.className = value === best ? "best" : "";
    const text = percent(score);
    item.setAttribute("aria-label", `${value}: ${spoken(text)}`);
    const label = document.createElement("span");
    label.textContent = String(value);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${score * 100}%`;
    bar.append(fill);
    const number = document.createElement("span");
    number.className = "value";
    number.textContent = text;
    item.append(label, bar, number);
    return item;
  }));
}

async function predict(file, filename, ticket) {
  window.digitPad.lastUpload = file;
  const form = new FormData();
  form.append("file", file, filename);
  showMessage("");
  try {
    const query = new URLSearchParams({ show_input: "true" });
    if (modelChoice.value) {
      query.set("model", modelChoice.value);
    }
    const response = await fetch(`/predict?${query}`, { method: "POST", body: form });
    const body = await response.json();
    if (ticket !== latest) {
      return;  // a newer stroke or upload has started since
    }
    if (!response.ok) {
      showEmpty("No prediction.");
      showMessage(body.detail || `The server answered ${response.status}.`);
      return;
    }
    showPrediction(body);
  } catch (error) {
    if (ticket === latest) {
      showEmpty("No prediction.");
      showMessage(`Could not reach the server: ${error.message}`);
    }
  } finally {
    if (ticket === latest) {
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
  const ticket = latest;
  uploadedPreview.hidden = true;
  canvas.toBlob((blob) => predict(blob, "canvas.png", ticket), "image/png");
}

function clearAll() {
  supersede();
  resetCanvas();
  uploadedPreview.hidden = true;
  uploadInput.value = "";
  showMessage("");
  showEmpty("Draw something to see a guess.");
}

function encode(source, type) {
  return new Promise((resolve) => source.toBlob(resolve, type, JPEG_QUALITY));
}

// A picture over the upload limit, redrawn smaller and re-encoded to fit it; null when even the
// smallest size does not fit. The new file carries no EXIF, so the orientation the server would
// have applied is applied here ("from-image"). A JPEG stays a JPEG; anything else tries PNG
// first, which keeps transparency and the sharp edges of drawings, then JPEG for photos.
async function shrinkToFit(file) {
  const image = await createImageBitmap(file, { imageOrientation: "from-image" });
  const types = file.type === "image/jpeg" ? ["image/jpeg"] : ["image/png", "image/jpeg"];
  const scratch = document.createElement("canvas");
  try {
    for (let side = SHRINK_TO_PX; side >= SMALLEST_SHRINK_PX; side /= 2) {
      const scale = Math.min(1, side / Math.max(image.width, image.height));
      scratch.width = Math.max(1, Math.round(image.width * scale));
      scratch.height = Math.max(1, Math.round(image.height * scale));
      const scratchContext = scratch.getContext("2d");
      scratchContext.imageSmoothingQuality = "high";  // average the pixels away, do not skip them
      scratchContext.drawImage(image, 0, 0, scratch.width, scratch.height);
      for (const type of types) {
        const blob = await encode(scratch, type);
        if (blob && blob.size <= maxUploadBytes) {
          return blob;
        }
      }
    }
    return null;
  } finally {
    image.close();
  }
}

function inUnits(bytes) {
  return bytes < 1048576 ? `${Math.round(bytes / 1024)} KiB` : `${(bytes / 1048576).toFixed(1)} MiB`;
}

async function predictUpload(file) {
  const ticket = supersede();
  setBusy(true);
  URL.revokeObjectURL(uploadedPreview.src);
  // Shown once the browser has decoded it: a file that is no image (or a TIFF, which most
  // browsers cannot show) would otherwise sit as a broken-image icon beside the server's answer.
  uploadedPreview.hidden = true;
  uploadedPreview.onload = () => {
    uploadedPreview.hidden = ticket !== latest;
  };
  uploadedPreview.src = URL.createObjectURL(file);
  if (file.size <= maxUploadBytes) {
    predict(file, file.name, ticket);
    return;
  }
  let smaller = null;
  try {
    smaller = await shrinkToFit(file);
  } catch {
    // This browser cannot decode it (TIFF in most browsers, a damaged file): smaller stays null.
  }
  if (ticket !== latest) {
    return;
  }
  if (smaller === null) {
    showEmpty("No prediction.");
    showMessage(`${file.name} is ${inUnits(file.size)}, over the ${inUnits(maxUploadBytes)} upload limit, `
      + "and this browser could not make it smaller: send a PNG or JPEG under the limit.");
    return;
  }
  predict(smaller, file.name, ticket);
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  supersede();
  setBusy(true);
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
    pendingPrediction = setTimeout(predictCanvas, STROKE_PAUSE_MS);
  }
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

clearButton.addEventListener("click", clearAll);

// The served models, each with its newest version's layers and test accuracy, for the choice
// of model. Without them (an API key is required, say) the server's default model answers.
async function listModels() {
  try {
    const response = await fetch("/models");
    if (!response.ok) {
      return;
    }
    const { default_model: defaultModel, models } = await response.json();
    modelChoice.options[0].textContent = `${defaultModel} (the server's default)`;
    for (const { name, versions } of models) {
      if (name === defaultModel || versions.length === 0) {
        continue;
      }
      const newest = versions[versions.length - 1];
      const accuracy = newest.test_accuracy === null ? "" : `, ${newest.test_accuracy} % on MNIST`;
      modelChoice.append(new Option(`${name} (${newest.architecture_class}${accuracy})`, name));
    }
  } catch {
    // The default model still answers; there is simply no other to choose.
  }
}

// A new choice of model judges again what is on show: the last drawing or upload sent.
modelChoice.addEventListener("change", () => {
  const previous = window.digitPad.lastUpload;
  if (previous !== null) {
    const ticket = supersede();
    setBusy(true);
    predict(previous, "again.png", ticket);
  }
});

uploadInput.addEventListener("change", () => {
  if (uploadInput.files[0]) {
    predictUpload(uploadInput.files[0]);
  }
});

// A small API for tests and curious users: draw strokes (judged at once, without the pause a
// hand needs between strokes) and read back what was sent.
window.digitPad = {
  drawStrokes(strokes) {
    supersede();
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
listModels();
