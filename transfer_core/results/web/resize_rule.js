// How a picture of any shape becomes the model's square input: a port of resize_rule.py (Pillow's
// resampling, fixed-point 8-bit as Pillow's Resample.c; its nearest as Geometry.c), so the page feeds the
// model the pixels the app would. Checked against the Python rule on real pictures (tests/test_web_export.py).
"use strict";

const PRECISION_BITS = 32 - 8 - 2;
const FILTERS = {
  bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
  bicubic: { support: 2.0, f: (x) => {
    const a = -0.5; x = Math.abs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  } },
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output position, first input index, count, weights.
function coeffs(inSize, outSize, filter) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale, ss = 1.0 / filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const w = new Float64Array(xmax);
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) { w[x] = filter.f((x + xmin - center + 0.5) * ss); ww += w[x]; }
    const k = new Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x] / ww : w[x];
      k[x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    out.push({ min: xmin, n: xmax, k });
  }
  return out;
}

function clip8(v) {
  if (v >= (1 << PRECISION_BITS) * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

// src: Uint8 RGB (3 per pixel), w x h -> RGB nw x nh, horizontal pass then vertical, as Pillow does.
function resample(src, w, h, nw, nh, interpolation) {
  if (interpolation === "nearest") return nearest(src, w, h, nw, nh);
  const filter = FILTERS[interpolation];
  let img = src, iw = w, ih = h;
  const vert = coeffs(h, nh, filter);
  if (nw !== w) {
    const first = vert[0].min, last = vert[nh - 1].min + vert[nh - 1].n;  // only the rows the vertical pass reads
    const horiz = coeffs(w, nw, filter), rows = last - first, tmp = new Uint8Array(nw * rows * 3);
    for (let y = 0; y < rows; y++) {
      const row = (y + first) * w * 3;
      for (let xx = 0; xx < nw; xx++) {
        const c = horiz[xx];
        for (let ch = 0; ch < 3; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < c.n; x++) ss += src[row + (x + c.min) * 3 + ch] * c.k[x];
          tmp[(y * nw + xx) * 3 + ch] = clip8(ss);
        }
      }
    }
    for (const c of vert) c.min -= first;
    img = tmp; iw = nw; ih = rows;
  }
  if (nh === h && nw !== w) return img;
  if (nh === h) return img.slice();
  const out = new Uint8Array(iw * nh * 3);
  for (let yy = 0; yy < nh; yy++) {
    const c = vert[yy];
    for (let xx = 0; xx < iw; xx++) {
      for (let ch = 0; ch < 3; ch++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let y = 0; y < c.n; y++) ss += img[((y + c.min) * iw + xx) * 3 + ch] * c.k[y];
        out[(yy * iw + xx) * 3 + ch] = clip8(ss);
      }
    }
  }
  return out;
}

// Pillow's ImagingScaleAffine (nearest): positions accumulated step by step, as there.
function nearest(src, w, h, nw, nh) {
  const out = new Uint8Array(nw * nh * 3), ax = w / nw, ay = h / nh, xs = new Int32Array(nw);
  let xo = ax * 0.5;
  for (let x = 0; x < nw; x++) { xs[x] = Math.min(w - 1, Math.trunc(xo)); xo += ax; }
  let yo = ay * 0.5;
  for (let y = 0; y < nh; y++) {
    const yi = Math.min(h - 1, Math.trunc(yo));
    yo += ay;
    for (let x = 0; x < nw; x++) for (let ch = 0; ch < 3; ch++) out[(y * nw + x) * 3 + ch] = src[(yi * w + xs[x]) * 3 + ch];
  }
  return out;
}

// Python's round(): halves to even.
function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// RGB w x h -> crop x crop x 3 uint8 (resize_rule.model_input).
function modelInput(rgb, w, h, resize, crop, interpolation) {
  const scale = resize / Math.min(w, h);
  const nw = Math.max(resize, roundHalfEven(w * scale)), nh = Math.max(resize, roundHalfEven(h * scale));
  const big = (nw === w && nh === h) ? rgb : resample(rgb, w, h, nw, nh, interpolation);
  const off = Math.floor((resize - crop) / 2);
  const left = Math.floor((nw - resize) / 2) + off, top = Math.floor((nh - resize) / 2) + off;
  const out = new Uint8Array(crop * crop * 3);
  for (let y = 0; y < crop; y++) {
    out.set(big.subarray(((top + y) * nw + left) * 3, ((top + y) * nw + left + crop) * 3), y * crop * 3);
  }
  return out;
}

globalThis.resizeRule = { modelInput, resample };
