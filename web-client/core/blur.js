// Background blur, made on this device: each camera frame goes through MediaPipe's image
// segmenter with the selfie segmentation model (WebAssembly on the CPU and a 250 kB model,
// vendored under vendor/mediapipe/); the person is drawn sharp over a blurred copy of the
// frame, and that canvas's track takes the camera's place in what we show ourselves and send
// (core/media.js swaps the tracks, so an encryption transform on the sender stays). No frame
// leaves the device to be blurred.
//
// Owns: loading the model (only once someone turns blur on), the frame loop, its measurements,
// the rule that turns blur off on a device too slow for it, and the choice (remembered in this
// browser). The switch itself is in the devices dialog (features/devices.js), which listens
// for `local:blur`.

import { announce } from '../lib/announce.js';
import { emit, on } from './bus.js';
import { log } from './log.js';
import { setVideoProcessor, swapLocalVideo } from './media.js';
import { exposeProbe } from './probe.js';
import { state } from './state.js';

const VENDOR = new URL('../vendor/mediapipe/', import.meta.url).href;
const BLUR_KEY = 'hearth.blur';
// Frames are processed at most this wide: the cost grows with the pixels, and a tile in the
// call is smaller than this anyway.
const MAX_WIDTH = 640;
// The background is blurred at a quarter of the size, which is far cheaper than blurring the
// full frame and looks the same once scaled up.
const SMALL = 4;
// The model sees 256×144: handing it that size spares it the scaling, and its mask (scaled
// up, which softens the outline a little) is small enough to turn into a picture cheaply.
const MODEL_WIDTH = 256;
const SMALL_BLUR_PX = 3;
// Too slow (see SlowRule): a clear camera is better than a stuttering blurred one.
const SLOW_FPS = 20;
const SLOW_FOR_MS = 5000;
const WINDOW_MS = 1000;
const WARM_UP_MS = 3000;

const BLUR_TEXT = {
  off: '',
  starting: 'Starting the blur…',
  on: 'Blurring runs on this device; nothing extra is sent.',
  slow: 'Your device is too slow for blur; it was turned off.',
  failed: 'Blur could not start in this browser; your camera is shown as it is.',
  noCamera: 'Blur starts when your camera is on.',
};

const blur = {
  wanted: readChoice(),
  status: 'off', // a key of BLUR_TEXT
  pipeline: null,
  modelRequested: false,
  frames: 0, // frames made since blur last started
  fps: 0, // frames out over the last second
  cameraFps: 0,
  msPerFrame: 0, // mean time of segmentation and composite over the last second
  msTotal: 0,
};

function readChoice() {
  try {
    return localStorage.getItem(BLUR_KEY) === 'on';
  } catch {
    return false;
  }
}

function remember(on) {
  try {
    localStorage.setItem(BLUR_KEY, on ? 'on' : 'off');
  } catch {
    // Private windows may refuse storage: the choice holds for this page.
  }
}

function setStatus(status) {
  blur.status = status;
  emit('local:blur', { wanted: blur.wanted, status, text: BLUR_TEXT[status] });
}

// ---------------------------------------------------------------------------------------
// The model: MediaPipe's image segmenter (an ES module and its WebAssembly, run on the CPU)
// with the selfie segmentation model, all from VENDOR. Loaded once, on first use.

let model = null;

function loadModel() {
  if (!model) {
    blur.modelRequested = true;
    model = import(`${VENDOR}vision_bundle.mjs`).then(({ ImageSegmenter }) => ImageSegmenter.createFromOptions(
      { wasmLoaderPath: `${VENDOR}vision_wasm_internal.js`, wasmBinaryPath: `${VENDOR}vision_wasm_internal.wasm` },
      {
        // The CPU (WebAssembly SIMD) is there on every device; a GPU through WebGL is not.
        baseOptions: { modelAssetPath: `${VENDOR}selfie_segmentation_landscape.tflite`, delegate: 'CPU' },
        runningMode: 'VIDEO',
        outputCategoryMask: false,
        outputConfidenceMasks: true,
      },
    ));
    model.catch(() => { model = null; });
  }
  return model;
}

// ---------------------------------------------------------------------------------------
// When blur is too slow to keep: fewer frames a second than SLOW_FPS (or than 3/4 of what the
// camera gives, for a slow camera) for SLOW_FOR_MS on end, once WARM_UP_MS have passed since
// it started (the first frames are slow while the model warms up). Times are given, not
// read, so the rule can be checked without waiting.

export class SlowRule {
  start(now, cameraFps) {
    this.startedAt = now;
    this.enough = Math.min(SLOW_FPS, cameraFps * 0.75);
    this.slowSince = null;
  }

  /** `fps` measured at `now`: true once the device has been too slow for long enough. */
  tooSlow(now, fps) {
    if (now - this.startedAt < WARM_UP_MS || fps >= this.enough) {
      this.slowSince = null;
      return false;
    }
    if (this.slowSince === null) this.slowSince = now;
    return now - this.slowSince >= SLOW_FOR_MS;
  }
}

// ---------------------------------------------------------------------------------------
// The frame loop.

class Pipeline {
  constructor(segmenter) {
    this.segmenter = segmenter;
    this.input = document.createElement('canvas');
    this.modelInput = document.createElement('canvas');
    this.modelInputCtx = this.modelInput.getContext('2d');
    this.output = document.createElement('canvas');
    this.small = document.createElement('canvas');
    this.mask = document.createElement('canvas');
    this.maskCtx = this.mask.getContext('2d');
    this.maskPixels = null;
    this.inputCtx = this.input.getContext('2d', { willReadFrequently: false });
    this.outputCtx = this.output.getContext('2d');
    this.smallCtx = this.small.getContext('2d');
    this.sizeTo(MAX_WIDTH, Math.round(MAX_WIDTH * 9 / 16));
    // Frames only when we say so (requestFrame), so each one is a finished composite.
    this.track = this.output.captureStream(0).getVideoTracks()[0];
    this.camera = null;
    this.generation = 0;
    this.stopped = false;
    this.times = []; // [when, ms] of frames in the last WINDOW_MS
    this.rule = new SlowRule();
  }

  sizeTo(width, height) {
    const w = Math.min(MAX_WIDTH, width);
    const h = Math.max(2, Math.round(height * w / width));
    if (this.input.width === w && this.input.height === h) return;
    for (const canvas of [this.input, this.output]) {
      canvas.width = w;
      canvas.height = h;
    }
    this.small.width = Math.max(2, Math.round(w / SMALL));
    this.small.height = Math.max(2, Math.round(h / SMALL));
    this.modelInput.width = MODEL_WIDTH;
    this.modelInput.height = Math.max(2, Math.round(h * MODEL_WIDTH / w));
  }

  /** Processes frames of `camera` from now on; the camera before it is stopped. */
  useCamera(camera) {
    const before = this.camera;
    this.camera = camera;
    const generation = ++this.generation;
    if (before && before !== camera) before.stop();
    const settings = camera.getSettings ? camera.getSettings() : {};
    blur.cameraFps = settings.frameRate || 30;
    this.rule.start(performance.now(), blur.cameraFps);
    if (typeof MediaStreamTrackProcessor === 'function') this.readFrames(camera, generation);
    else this.watchVideo(camera, generation);
  }

  // Where the browser has it, frames come straight from the track (and keep coming while
  // the tab is in the background).
  async readFrames(camera, generation) {
    const reader = new MediaStreamTrackProcessor({ track: camera }).readable.getReader();
    try {
      while (!this.stopped && generation === this.generation) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        try {
          if (!this.stopped && generation === this.generation) this.process(frame, frame.displayWidth, frame.displayHeight);
        } finally {
          frame.close();
        }
      }
    } catch (err) {
      log('blur: reading camera frames failed', err && err.name);
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Elsewhere, through a video element, one frame per frame it shows.
  watchVideo(camera, generation) {
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.srcObject = new MediaStream([camera]);
    video.play().catch(() => {});
    const next = () => {
      if (this.stopped || generation !== this.generation) {
        video.srcObject = null;
        return;
      }
      if (video.videoWidth > 0) this.process(video, video.videoWidth, video.videoHeight);
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(next);
      else setTimeout(next, 1000 / 30);
    };
    next();
  }

  process(source, width, height) {
    // The camera is off: the sender sends black anyway, so spend nothing on it.
    this.camera.enabled = this.track.enabled;
    if (!this.track.enabled || !width || !height) {
      this.rule.start(performance.now(), blur.cameraFps);
      return;
    }
    const started = performance.now();
    this.sizeTo(width, height);
    this.inputCtx.drawImage(source, 0, 0, this.input.width, this.input.height);
    this.modelInputCtx.drawImage(this.input, 0, 0, this.modelInput.width, this.modelInput.height);
    try {
      this.segmenter.segmentForVideo(this.modelInput, started, (result) => {
        this.segmented = performance.now();
        this.composite(result.confidenceMasks[0]);
      });
    } catch (err) {
      log('blur: segmentation failed', err && err.message);
      turnOff('failed');
      return;
    }
    if (this.stopped) return;
    if (this.track.requestFrame) this.track.requestFrame();
    const now = performance.now();
    this.lastSplit = [this.segmented - started, now - this.segmented];
    this.measure(now, now - started);
  }

  // The mask as a picture whose alpha is how sure the model is that a pixel is a person.
  maskImage(mask) {
    const { width, height } = mask;
    if (!this.maskPixels || this.mask.width !== width || this.mask.height !== height) {
      this.mask.width = width;
      this.mask.height = height;
      this.maskPixels = new ImageData(width, height);
    }
    const confidence = mask.getAsFloat32Array();
    const pixels = this.maskPixels.data;
    for (let i = 0; i < confidence.length; i += 1) pixels[i * 4 + 3] = confidence[i] * 255;
    this.maskCtx.putImageData(this.maskPixels, 0, 0);
    return this.mask;
  }

  composite(confidence) {
    const mask = this.maskImage(confidence);
    const { width: w, height: h } = this.output;
    const ctx = this.outputCtx;
    // The background: the frame shrunk and blurred (drawn a little past the edges so the
    // blur does not fade them to black), scaled back up.
    const { width: sw, height: sh } = this.small;
    const pad = SMALL_BLUR_PX * 2;
    this.smallCtx.filter = `blur(${SMALL_BLUR_PX}px)`;
    this.smallCtx.drawImage(this.input, -pad, -pad, sw + 2 * pad, sh + 2 * pad);
    // The person, sharp, over it.
    ctx.save();
    ctx.globalCompositeOperation = 'copy';
    ctx.drawImage(mask, 0, 0, w, h);
    ctx.globalCompositeOperation = 'source-in';
    ctx.drawImage(this.input, 0, 0, w, h);
    ctx.globalCompositeOperation = 'destination-over';
    ctx.drawImage(this.small, 0, 0, w, h);
    ctx.restore();
  }

  measure(now, ms) {
    blur.frames += 1;
    blur.msTotal += ms;
    this.times.push([now, ms]);
    while (this.times.length && this.times[0][0] <= now - WINDOW_MS) this.times.shift();
    blur.fps = this.times.length * 1000 / WINDOW_MS;
    blur.msPerFrame = this.times.reduce((sum, [, m]) => sum + m, 0) / this.times.length;
    // A browser may slow a hidden page down on purpose: that is not the device's fault.
    if (document.hidden) this.rule.start(now, blur.cameraFps);
    else if (this.rule.tooSlow(now, blur.fps)) {
      const [segment, composite] = this.lastSplit.map((ms) => ms.toFixed(1));
      log('blur: too slow', blur.fps.toFixed(1), 'fps,', blur.msPerFrame.toFixed(1), 'ms a frame; the last:', segment, 'ms to segment,', composite, 'to composite');
      turnOff('slow');
    }
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    this.track.stop();
  }
}

// ---------------------------------------------------------------------------------------
// Turning it on and off.

let busy = Promise.resolve();

function camera() {
  const stream = state.localStream;
  return stream && stream.getVideoTracks().find((t) => t.readyState === 'live');
}

async function start() {
  if (blur.pipeline || !blur.wanted) return;
  if (!camera()) {
    setStatus('noCamera');
    return;
  }
  setStatus('starting');
  let segmenter;
  try {
    segmenter = await loadModel();
  } catch (err) {
    log('blur: the model did not load', err && err.message);
    blur.wanted = false;
    setStatus('failed');
    return;
  }
  const raw = camera();
  if (!blur.wanted || !raw) {
    setStatus(blur.wanted ? 'noCamera' : 'off');
    return;
  }
  const pipeline = new Pipeline(segmenter);
  blur.pipeline = pipeline;
  blur.frames = 0;
  blur.msTotal = 0;
  blur.fps = 0;
  pipeline.useCamera(raw);
  try {
    await swapLocalVideo(pipeline.track);
  } catch (err) {
    log('blur: could not use the blurred picture', err && err.message);
    pipeline.stop();
    blur.pipeline = null;
    blur.wanted = false;
    setStatus('failed');
    return;
  }
  setVideoProcessor({
    useCamera: (track) => pipeline.useCamera(track),
    // Leaving: the camera goes off with the rest; blur starts again with the next camera.
    stop: () => {
      pipeline.stop();
      if (pipeline.camera) pipeline.camera.stop();
      if (blur.pipeline === pipeline) blur.pipeline = null;
      setVideoProcessor(null);
    },
  });
  log('blur on');
  setStatus('on');
}

async function stop(status) {
  const pipeline = blur.pipeline;
  if (!pipeline) {
    setStatus(status);
    return;
  }
  blur.pipeline = null;
  setVideoProcessor(null);
  // The camera track itself goes back where the blurred one was, before that one stops.
  if (pipeline.camera && pipeline.camera.readyState === 'live' && state.localStream) {
    try {
      await swapLocalVideo(pipeline.camera);
    } catch (err) {
      log('blur: could not put the camera back', err && err.message);
    }
  }
  pipeline.stop();
  log('blur off');
  setStatus(status);
}

function queue(task) {
  busy = busy.then(task, task);
  return busy;
}

/** Turns blur on or off at the person's choice (remembered in this browser). */
export function setBlur(on) {
  blur.wanted = on;
  remember(on);
  return queue(() => (on ? start() : stop('off')));
}

function turnOff(status) {
  // Once is enough: frames already on their way may find the same fault.
  if (!blur.wanted) return;
  blur.wanted = false;
  remember(false);
  announce(BLUR_TEXT[status]);
  queue(() => stop(status));
}

/** Whether blur is wanted, and what it is doing (a key of BLUR_TEXT). */
export function blurState() {
  return { wanted: blur.wanted, status: blur.status, text: BLUR_TEXT[blur.status] };
}

// A new camera (joining, rejoining): blur follows the choice.
on('local:localMedia', () => {
  if (blur.wanted) queue(start);
});

exposeProbe('blur', () => ({
  on: Boolean(blur.pipeline),
  wanted: blur.wanted,
  status: blur.status,
  modelRequested: blur.modelRequested,
  frames: blur.frames,
  fps: blur.fps,
  cameraFps: blur.cameraFps,
  msPerFrame: blur.msPerFrame,
  meanMsPerFrame: blur.frames ? blur.msTotal / blur.frames : 0,
  trackId: blur.pipeline ? blur.pipeline.track.id : null,
  cameraTrackId: blur.pipeline && blur.pipeline.camera ? blur.pipeline.camera.id : null,
}));
