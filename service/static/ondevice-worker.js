// "Stylize on this device", the worker: runs a style's ONNX model with onnxruntime-web.
// A dedicated module worker so that (1) WebAssembly may compile here and only here: this
// script's answer carries the page's policy plus 'wasm-unsafe-eval' (service/
// security_headers.py), the page keeps the strict one; (2) a forward of seconds never
// freezes the page. onnxruntime-web is served by this service (/static/vendor/, fetched
// at set-up by service/webvendor.py): WebGPU where the browser gives an adapter, WASM
// otherwise. Nothing here touches the network but those files.

const VENDOR = "/static/vendor/onnxruntime-web/";
let ort = null;
let provider = null;
let session = null;
let sessionSha = null;

async function loadRuntime(wanted) {
  const build = wanted === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs";
  const module = await import(VENDOR + build);
  module.env.wasm.wasmPaths = VENDOR;
  // One thread: more need SharedArrayBuffer, i.e. a cross-origin isolated page.
  module.env.wasm.numThreads = 1;
  module.env.wasm.proxy = false;
  return module;
}

async function hasWebGpu() {
  try {
    return Boolean(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

async function openSession(model, sha256) {
  if (session && sessionSha === sha256) return;
  session = null;
  if (await hasWebGpu()) {
    try {
      ort = await loadRuntime("webgpu");
      session = await ort.InferenceSession.create(model, { executionProviders: ["webgpu"] });
      provider = "WebGPU";
    } catch {
      session = null; // an adapter that cannot run it: WASM below
    }
  }
  if (!session) {
    ort = await loadRuntime("wasm");
    session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
    provider = "WASM";
  }
  sessionSha = sha256;
}

self.onmessage = async ({ data }) => {
  try {
    const openedAt = performance.now();
    await openSession(data.model, data.sha256);
    const started = performance.now();
    const input = new ort.Tensor("float32", data.pixels, [1, 3, data.height, data.width]);
    const output = await session.run({ image: input });
    const pixels = output.stylized.data;
    const runMs = performance.now() - started;
    self.postMessage(
      { ok: true, pixels, provider, runMs, loadMs: started - openedAt },
      [pixels.buffer],
    );
  } catch (err) {
    self.postMessage({ ok: false, message: String(err?.message || err) });
  }
};
