// The page of serving: pick, drop or paste an image, preview it, POST it to
// /predict and draw the top classes as bars. No libraries: it must work offline.
'use strict';

const $ = (id) => document.getElementById(id);
let health = null; // what GET /health answered: model, classes, labels, preset, limits
let current = null; // the File shown and classified
let previewUrl = null;

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
  if (isError) $('results').replaceChildren();
}

async function loadHealth() {
  try {
    const reply = await fetch('health');
    health = await reply.json();
    $('model').textContent =
      `Model ${health.model}, ${health.classes} classes, preset ${health.preset}`;
    $('labels').textContent = health.labels.join(', ');
    $('top').max = health.classes;
    $('top').value = classesShown(health.top, health.classes);
  } catch (error) {
    $('model').textContent = `The service did not answer (${error.message}).`;
  }
}

// The number of classes to ask for: what the box says, as a whole number from 1 to the
// model's class count (a number box's max stops only its arrows, not what is typed).
function classesShown(value, classes) {
  const count = Math.floor(Number(value));
  const most = classes > 0 ? classes : Infinity;
  return Number.isFinite(count) ? Math.min(Math.max(1, count), most) : 1;
}

function choose(file) {
  if (!file) return;
  current = file;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const preview = $('preview');
  preview.src = previewUrl;
  preview.alt = `The chosen image, ${file.name}`;
  preview.hidden = false;
  classify();
}

function megabytes(bytes) {
  return `${(bytes / 2 ** 20).toFixed(1)} MB`;
}

async function classify() {
  const top = classesShown($('top').value, health && health.classes);
  $('top').value = top; // the box shows what is asked for: 53 becomes the 10 classes
  const file = current;
  if (!file) return;
  if (health && file.size > health.max_bytes) {
    setStatus(`${file.name} is ${megabytes(file.size)}: the limit is ` +
      `${megabytes(health.max_bytes)}.`, true);
    return;
  }
  setStatus(`Classifying ${file.name}\u2026`);
  $('results').setAttribute('aria-busy', 'true');
  try {
    const reply = await fetch(`predict?top=${top}`, { method: 'POST', body: file });
    const answer = await reply.json();
    if (file !== current) return; // another image was chosen meanwhile
    if (!reply.ok) {
      setStatus(answer.error || `The service answered ${reply.status}.`, true);
      return;
    }
    draw(answer.predictions);
    setStatus(file.name);
  } catch (error) {
    if (file === current) setStatus(`The request failed (${error.message}).`, true);
  } finally {
    $('results').removeAttribute('aria-busy');
  }
}

function draw(predictions) {
  const rows = predictions.map(({ label, probability }) => {
    const percent = `${(probability * 100).toFixed(1)}%`;
    const row = document.createElement('li');
    row.className = 'bar';
    row.dataset.label = label;
    row.dataset.probability = String(probability);
    row.setAttribute('aria-label', `${label}: ${percent}`);
    const name = document.createElement('span');
    name.className = 'label';
    name.textContent = label;
    name.title = label;
    const track = document.createElement('div');
    track.className = 'track';
    const fill = document.createElement('div');
    fill.className = 'fill';
    fill.style.width = `${probability * 100}%`;
    track.append(fill);
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = percent;
    row.append(name, track, value);
    return row;
  });
  $('results').replaceChildren(...rows);
}

function firstImage(files) {
  return Array.from(files || []).find((file) => file.type.startsWith('image/')) ||
    (files && files[0]);
}

document.addEventListener('DOMContentLoaded', () => {
  const drop = $('drop');
  $('file').addEventListener('change', (event) => choose(event.target.files[0]));
  $('top').addEventListener('change', classify);
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    choose(firstImage(event.dataTransfer.files));
  });
  // A file dropped beside the box must not make the browser leave the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  document.addEventListener('paste', (event) => choose(firstImage(event.clipboardData.files)));
  loadHealth();
});
