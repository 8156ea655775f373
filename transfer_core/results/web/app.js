// The exported model in the browser, with onnxruntime-web's WebAssembly build vendored beside this page:
// no server beyond a static one, nothing sent anywhere. The model takes uint8 RGB pixels (N x C x C x 3,
// after resize_rule.js) and returns calibrated probabilities and, with the familiarity check, a novelty
// score; "not sure" and "unfamiliar" as in the app. ?selftest=1 runs the bundle's own parity pictures.
"use strict";

const WORDS = {
  en: {
    title: "Your model: {classes}", about: "Runs in this browser: your pictures never leave this device.",
    choose: "Choose pictures", camera: "Use the camera", snap: "Take a photo",
    threshold: "Say \"not sure\" below this confidence", loading: "Loading the model…", ready: "Ready.",
    working: "Looking at {n} picture(s)…", nocamera: "No camera found.",
    notsure: "Not sure (best guess {name}, only {sure} sure)", sure: "{sure} sure",
    unfamiliar: "This does not look like the training pictures: do not trust the answer.",
    parity: "parity: {agree} of {n} agree", gap: "largest probability difference {gap}",
    failed: "Could not run the model: {error}", photo: "photo",
  },
  zh: {
    title: "你的模型：{classes}", about: "在本浏览器中运行：你的图片不会离开这台设备。",
    choose: "选择图片", camera: "使用摄像头", snap: "拍照",
    threshold: "置信度低于此值时回答“不确定”", loading: "正在加载模型…", ready: "已就绪。",
    working: "正在查看 {n} 张图片…", nocamera: "未找到摄像头。",
    notsure: "不确定（最可能是 {name}，把握只有 {sure}）", sure: "把握 {sure}",
    unfamiliar: "这张图片与训练图片不像：请勿相信这个回答。",
    parity: "parity: {agree} of {n} agree（{agree}/{n} 一致）", gap: "最大概率差 {gap}",
    failed: "无法运行模型：{error}", photo: "照片",
  },
};
const params = new URLSearchParams(location.search);
let lang = (params.get("lang") || navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
let card = null, session = null, lastAnswers = [];

function t(key, values = {}) {
  return WORDS[lang][key].replace(/\{(\w+)\}/g, (_, k) => String(values[k]));
}
const pct = (p) => `${Math.round(p * 100)}%`;
const $ = (id) => document.getElementById(id);

function drawWords() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  if (card) $("title").textContent = t("title", { classes: card.classes.join(", ") });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  render(lastAnswers);
}

// A picture (File, Blob or URL) -> RGB pixels at its own size, upright (EXIF), transparency on white.
async function readPixels(source) {
  const blob = typeof source === "string" ? await (await fetch(source)).blob() : source;
  const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none",
                                                 premultiplyAlpha: "none" });
  return bitmapPixels(bitmap, bitmap.width, bitmap.height);
}

function bitmapPixels(image, w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  ctx.drawImage(image, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data, rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) { rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2]; }
  return { rgb, w, h };
}

// The model's input for one picture: the resize rule named on the card.
function modelPixels({ rgb, w, h }) {
  const p = card.preprocessing;
  return resizeRule.modelInput(rgb, w, h, p.resize, p.crop, p.interpolation);
}

async function classify(pixelsList) {
  const c = card.preprocessing.crop, batch = new Uint8Array(pixelsList.length * c * c * 3);
  pixelsList.forEach((px, i) => batch.set(modelPixels(px), i * c * c * 3));
  const input = new ort.Tensor("uint8", batch, [pixelsList.length, c, c, 3]);
  const out = await session.run({ [card.input.name]: input });
  const probs = out.probabilities.data, n = card.classes.length;
  return pixelsList.map((_, i) => {
    const row = Array.from(probs.slice(i * n, (i + 1) * n));
    const novelty = out.novelty ? out.novelty.data[i] : null;
    const top = row.indexOf(Math.max(...row));
    return { probabilities: row, top: card.classes[top], novelty,
             unfamiliar: novelty === null || !card.novelty ? null : novelty > card.novelty.threshold };
  });
}

function render(answers) {
  lastAnswers = answers;
  const box = $("answers");
  box.replaceChildren();
  const threshold = Number($("threshold").value);
  for (const a of answers) {
    const row = document.createElement("div"), text = document.createElement("div");
    row.className = "answer"; row.dataset.top = a.top; row.dataset.unfamiliar = String(a.unfamiliar);
    if (a.thumb) { const img = document.createElement("img"); img.src = a.thumb; img.alt = a.name; row.append(img); }
    const best = Math.max(...a.probabilities), ranked = a.probabilities.map((p, i) => [p, card.classes[i]])
      .sort((x, y) => y[0] - x[0]);
    const top = document.createElement("div");
    top.className = "top";
    top.textContent = best < threshold ? t("notsure", { name: a.top, sure: pct(best) })
                                       : `${a.top} · ${t("sure", { sure: pct(best) })}`;
    if (best < threshold) top.classList.add("warn");
    const rest = document.createElement("div");
    rest.className = "small";
    rest.textContent = `${a.name} — ` + ranked.slice(1, 3).map(([p, c]) => `${c} ${pct(p)}`).join(", ");
    text.append(top, rest);
    if (a.unfamiliar) { const u = document.createElement("div"); u.className = "bad"; u.textContent = t("unfamiliar"); text.append(u); }
    row.append(text);
    box.append(row);
  }
}

async function answerFiles(files) {
  $("status").textContent = t("working", { n: files.length });
  const pixels = await Promise.all(files.map(readPixels));
  const answers = await classify(pixels);
  answers.forEach((a, i) => { a.name = files[i].name; a.thumb = URL.createObjectURL(files[i]); });
  render(answers);
  $("status").textContent = t("ready");
  document.body.dataset.answered = String(answers.length);
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    $("video").srcObject = stream; $("video").style.display = "block"; $("snap").hidden = false;
  } catch (e) { $("status").textContent = t("nocamera"); }
}

async function snap() {
  const v = $("video"), px = bitmapPixels(v, v.videoWidth, v.videoHeight);
  const answers = await classify([px]);
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth; canvas.height = v.videoHeight; canvas.getContext("2d").drawImage(v, 0, 0);
  answers[0].name = t("photo"); answers[0].thumb = canvas.toDataURL("image/jpeg");
  render([...answers, ...lastAnswers]);
}

// ?selftest=1: the bundle's parity pictures, compared with the engine's answers written at export.
async function selftest() {
  const expected = await (await fetch("selftest/expected.json")).json();
  const names = Object.keys(expected.pictures), tol = expected.max_probability_difference;
  const answers = await classify(await Promise.all(names.map((n) => readPixels(`selftest/${encodeURIComponent(n)}`))));
  let agree = 0, gap = 0;
  answers.forEach((a, i) => {
    const e = expected.pictures[names[i]];
    const d = Math.max(...a.probabilities.map((p, j) => Math.abs(p - e.probabilities[j])));
    gap = Math.max(gap, d);
    const clear = e.novelty === null || Math.abs(e.novelty - expected.novelty_threshold) > expected.novelty_tolerance;
    if (a.top === e.top && d <= tol && (!clear || a.unfamiliar === e.unfamiliar)) agree += 1;
    a.name = names[i]; a.thumb = `selftest/${encodeURIComponent(names[i])}`;
  });
  render(answers);
  const line = document.createElement("p");
  line.id = "parity";
  line.dataset.agree = String(agree); line.dataset.n = String(names.length); line.dataset.gap = String(gap);
  line.textContent = `${t("parity", { agree, n: names.length })} · ${t("gap", { gap: gap.toExponential(1) })}`;
  $("status").after(line);
}

async function main() {
  $("status").textContent = t("loading");
  card = await (await fetch("model_card.json")).json();
  const th = card.answer ? card.answer.not_sure_below : 0.5;
  $("threshold").value = th; $("threshold_value").textContent = pct(th);
  drawWords();
  ort.env.wasm.wasmPaths = { mjs: new URL("ort/ort-wasm-simd-threaded.js", location.href).href,
                             wasm: new URL("ort/ort-wasm-simd-threaded.wasm", location.href).href };
  if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;  // threads need a cross-origin-isolated page
  session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  $("status").textContent = t("ready");
  document.body.dataset.ready = "1";
  if (params.get("selftest")) await selftest();
}

$("lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; drawWords(); };
$("files").onchange = (e) => answerFiles(Array.from(e.target.files)).catch(fail);
$("camera").onclick = startCamera;
$("snap").onclick = () => snap().catch(fail);
$("threshold").oninput = () => { $("threshold_value").textContent = pct(Number($("threshold").value)); render(lastAnswers); };
function fail(e) { $("status").textContent = t("failed", { error: e.message || e }); document.body.dataset.error = String(e); }
main().catch(fail);
