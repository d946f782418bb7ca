// The labeling page: one image at a time, the model's guess (or the audit's suggestion)
// preselected; keys 0-9 answer with the n-th class, Enter with the preselected one, S skips,
// Backspace undoes. Every answer is the server's to carry out (POST /answer); a refusal (409:
// answered in another tab, the file gone meanwhile) is shown and the list is read again.
"use strict";

const state = { classes: [], skip: "skip", items: [], total: 0, answered: 0, busy: false };
const $ = (id) => document.getElementById(id);

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function load() {
  const response = await fetch("/items");
  const data = await response.json();
  Object.assign(state, { classes: data.classes, skip: data.skip, items: data.items, total: data.total, answered: data.answered });
  $("where").textContent = `answers are written to ${data.labels_csv}`;
  if (!$("classes").children.length) {
    state.classes.forEach((name, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.label = name;
      button.textContent = i < 10 ? `${name} (${i})` : name;
      button.addEventListener("click", () => answer(name));
      $("classes").appendChild(button);
    });
  }
  show();
}

function show() {
  const item = state.items[0];
  $("progress").textContent = `${state.items.length} of ${state.total} left (${state.answered} answered)`;
  for (const button of $("classes").children) {
    button.classList.toggle("preselected", !!item && button.dataset.label === item.guess);
  }
  if (!item) {
    $("image").removeAttribute("src");
    $("image").dataset.file = "";
    $("guess").textContent = "all done";
    return;
  }
  $("image").src = `/image?file=${encodeURIComponent(item.file)}`;
  $("image").dataset.file = item.file;
  const given = item.given === null ? "" : ` (labeled ${item.given} now)`;
  $("guess").textContent = item.guess ? `guess: ${item.guess}${given}` : `no guess${given}`;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

async function answer(label) {
  const item = state.items[0];
  if (!item || state.busy) return;
  state.busy = true;
  try {
    await post("/answer", { file: item.file, label });
    say(label === state.skip ? `${item.file}: skipped` : `${item.file}: ${label}`);
  } catch (e) {
    say(e.message, true);
  } finally {
    state.busy = false;
  }
  await load();
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    const item = await post("/undo");
    say(`undone: ${item.file}`);
  } catch (e) {
    say(e.message, true);
  } finally {
    state.busy = false;
  }
  await load();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (/^[0-9]$/.test(event.key) && Number(event.key) < state.classes.length) {
    answer(state.classes[Number(event.key)]);
  } else if (event.key === "Enter" && state.items[0] && state.items[0].guess) {
    answer(state.items[0].guess);
  } else if (event.key === "s" || event.key === "S") {
    answer(state.skip);
  } else if (event.key === "Backspace") {
    event.preventDefault();
    undo();
  } else {
    return;
  }
  event.preventDefault();
});
$("skip").addEventListener("click", () => answer(state.skip));
$("undo").addEventListener("click", () => undo());
load();
