// Shared by the page's modules: the API call, its errors in words, and formatting.

export const $ = (sel, root = document) => root.querySelector(sel);

export const KEY_STORAGE = "stylize.apiKey";

// ------------------------------------------------------------------ API
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (!response.ok) {
    let code = "http_" + response.status;
    let message = response.statusText || "request failed";
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

const HINTS = {
  400: "The file is not a readable image",
  401: "An API key is needed (see “API key” at the top)",
  403: "The API key was refused",
  404: "Not found",
  409: "The style is not ready yet",
  413: "Too big",
  415: "Unsupported file type",
  422: "Invalid option",
  429: "The service is busy, try again in a moment",
  504: "The service took too long",
};

// A mistake found on the page before any request (no file picked, bad JSON).
export class LocalError extends Error {}

function readable(err) {
  if (err instanceof ApiError) {
    const hint = HINTS[err.status];
    return hint ? `${hint}: ${err.message}` : err.message;
  }
  if (err instanceof LocalError) return err.message;
  return `Could not reach the service (${err.message})`;
}

export function showError(el, err) {
  el.textContent = err ? readable(err) : "";
  el.hidden = !err;
}

// ------------------------------------------------------------------ formatting
export function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function fmtBytes(n) {
  return n < 1024 * 1024 ? `${Math.ceil(n / 1024)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}
