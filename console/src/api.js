// Calls to the facade's REST API from the console: same origin, the session cookie, and the
// X-Requested-With header that the facade's CSRF guard asks of cookie-authenticated requests.

export class ApiError extends Error {
  constructor(status, message, code, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {}; // a 422's field path → problem ("url", "config.port")
  }
}

// The facade's error bodies are {"error": "<message>", "code", "details"} (a 422's details
// hold {"fields": {path: problem}}); an {"error": {"message", "code"}} shape is read too.
function errorOf(status, body) {
  const error = body && body.error;
  const fields = body && body.details && body.details.fields;
  if (typeof error === "string") return new ApiError(status, error, body.code, fields);
  if (error && typeof error.message === "string") return new ApiError(status, error.message, error.code);
  return new ApiError(status, `the server answered ${status}`, undefined);
}

export async function api(method, path, body, headers = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-Requested-With": "streamspace", ...headers },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "the server cannot be reached", "NETWORK");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw errorOf(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Every item of a list that pages with `continue` tokens (`params`: its filters).
export async function listAll(path, plural, params = {}) {
  const items = [];
  let token = null;
  do {
    const page = await get(path + query({ ...params, limit: 1000, continue: token }));
    items.push(...(page[plural] || []));
    token = page.continue;
  } while (token);
  return items;
}

// Signing in exchanges the credential for an HttpOnly cookie (the facade's `signin`); who is
// signed in is GET /api/v1/me (401 when nobody).
export const auth = {
  current: () => get("/api/v1/me"),
  signIn: (token) => api("POST", "/api/v1/auth/session", { token }),
  signOut: () => api("DELETE", "/api/v1/auth/session"),
};
