// The drawing page of `mnist serve`: draw on #canvas (pointer events: mouse, pen and touch), and
// the drawing is sent to POST /predict as a PNG whenever it changed and no request is in flight.
// The answer fills #prediction (its text starts with the label), a bar per class, and #seen (the
// 28x28 digit the model saw). An uploaded image goes the same way, as a multipart upload. "Show
// why" sends them to POST /explain instead, whose map is laid over the 28x28 digit (#why-map).
// "Wrong? It is:" (#correct), shown once the answer is for the drawing as it stands, sends that
// image to POST /feedback with the class clicked.
"use strict";

const canvas = document.getElementById("canvas");
const pen = canvas.getContext("2d");
const prediction = document.getElementById("prediction");
const bars = document.getElementById("bars");
const seen = document.getElementById("seen").getContext("2d");
const status = document.getElementById("status");
const tokenRow = document.getElementById("token-row");
const tokenInput = document.getElementById("token");
const whyButton = document.getElementById("why");
const whyMap = document.getElementById("why-map");
const whyCaption = document.getElementById("why-caption");
const correct = document.getElementById("correct");
const correctClasses = document.getElementById("correct-classes");

let drawing = false;
let drawn = false;      // anything on the canvas since the last clear
let inFlight = false;   // a request is being answered
let changed = false;    // the drawing changed since the last request was sent
let why = false;        // ask /explain (the answer and its map) instead of /predict
let answered = null;    // the body and headers of the request whose answer is shown

function clear() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  drawn = changed = false;
  prediction.textContent = "draw a digit";
  bars.replaceChildren();
  seen.clearRect(0, 0, 28, 28);
  whyMap.hidden = true;
  correct.hidden = true;
  answered = null;
  status.textContent = "";
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x, y);
  pen.stroke();
  drawn = true;
  update();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  pen.lineTo(x, y);
  pen.stroke();
  update();
});
for (const name of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(name, () => { drawing = false; update(); });
}

function headers(extra) {
  const token = tokenInput.value || sessionStorage.getItem("mnist-token");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// Send the drawing when it changed; while a request is in flight, send again once it is answered.
function update() {
  changed = true;
  correct.hidden = true;  // the answer shown is for an older drawing: nothing to correct until the new one's
  if (inFlight || !drawn) return;
  changed = false;
  inFlight = true;
  canvas.toBlob((blob) => ask(blob, headers({ "Content-Type": "image/png" })), "image/png");
}

async function ask(body, requestHeaders) {
  inFlight = true;
  try {
    const route = why ? "explain" : "predict";
    const reply = await fetch(`${route}?input=true`, { method: "POST", headers: requestHeaders, body });
    const answer = await reply.json();
    if (reply.status === 401) {
      tokenRow.hidden = false;
      status.textContent = "this server needs a token: enter it and draw again";
    } else if (!reply.ok) {
      status.textContent = `${reply.status}: ${answer.detail}`;
    } else if (drawn || !(body instanceof Blob)) {
      show((answer.predictions || answer.explanations)[0]);
      answered = { body, headers: requestHeaders };
      status.textContent = "";
    }
  } catch (error) {
    status.textContent = `no answer from the server: ${error}`;
  } finally {
    inFlight = false;
    if (changed && drawn) update();
  }
}

function show(p) {
  prediction.textContent = `${p.label} (${(100 * p.confidence).toFixed(1)}%)`;
  bars.replaceChildren(...Object.entries(p.probabilities).map(([name, value]) => {
    const bar = document.createElement("div");
    bar.className = name === p.label ? "bar top" : "bar";
    bar.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
    bar.querySelector(".name").textContent = name;
    bar.querySelector(".fill").style.width = `${(100 * value).toFixed(1)}%`;
    bar.querySelector(".fill").style.display = "block";
    bar.querySelector(".value").textContent = value.toFixed(2);
    return bar;
  }));
  const pixels = seen.createImageData(28, 28);
  p.input.flat().forEach((v, i) => pixels.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(pixels, 0, 0);
  whyMap.hidden = !(why && p.map_png);
  if (p.map_png) whyMap.src = p.map_png;
  correctClasses.replaceChildren(...Object.keys(p.probabilities).filter((name) => name !== p.label).map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.addEventListener("click", () => teach(name));
    return button;
  }));
  correct.hidden = changed;  // a newer drawing is on its way: its answer offers the corrections
}

// Keep the image last answered as `label` in the server's feedback store.
async function teach(label) {
  if (!answered) return;
  try {
    const reply = await fetch(`feedback?label=${encodeURIComponent(label)}`,
                              { method: "POST", headers: answered.headers, body: answered.body });
    const entry = await reply.json();
    status.textContent = reply.ok ? `kept as ${entry.label} (${entry.id}): thank you` : `${reply.status}: ${entry.detail}`;
    if (reply.ok) correct.hidden = true;
  } catch (error) {
    status.textContent = `no answer from the server: ${error}`;
  }
}

document.getElementById("clear").addEventListener("click", clear);
whyButton.addEventListener("click", () => {
  why = !why;
  whyButton.setAttribute("aria-pressed", String(why));
  whyCaption.hidden = !why;
  whyMap.hidden = true;
  if (drawn) update();  // ask again, for the map (or without it)
});
document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  clear();
  ask(form, headers({}));
  event.target.value = "";
});
tokenInput.addEventListener("change", () => sessionStorage.setItem("mnist-token", tokenInput.value));

pen.lineWidth = 20;
pen.lineCap = pen.lineJoin = "round";
pen.strokeStyle = "#000";
clear();
