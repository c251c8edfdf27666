// Calls to the API. The key travels in the Authorization header only: never in a URL, never in a cookie.
// Every error becomes an ApiError carrying what the problem+json answer said (title, detail, errors[]).
// Paths are relative ("api/activities"): they resolve against the page's URL, so the page works when the
// app is served under a path prefix (a proxy's, or mounted in another app) as well as at the root.

export class ApiError extends Error {
  constructor(status, { title, detail = null, errors = [], retryAfter = null }) {
    super(detail || title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = Array.isArray(errors) ? errors : [];
    this.retryAfter = retryAfter;
  }
}

export function headers(key, extra = {}) {
  return { Authorization: `Bearer ${key}`, ...extra };
}

export function url(path, params) {
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

/** The JSON body of a successful GET, or throws an ApiError (AbortError passes through). */
export async function getJson(path, params, key, signal) {
  const response = await send(url(path, params), { headers: headers(key, { Accept: "application/json" }), signal });
  if (!response.ok) throw await problemOf(response);
  return response.json();
}

/** fetch() without cookies or caching; a failure to connect becomes an ApiError with status 0. */
export async function send(target, init) {
  try {
    return await fetch(target, { credentials: "omit", cache: "no-store", ...init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "The API did not answer", detail: String(error.message || error) });
  }
}

export async function problemOf(response) {
  let body = null;
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      body = await response.json();
    } catch {
      body = null;
    }
  }
  return new ApiError(response.status, {
    title: (body && body.title) || response.statusText || "Error",
    detail: body && typeof body.detail === "string" ? body.detail : null,
    errors: body && body.errors,
    retryAfter: response.headers.get("retry-after"),
  });
}
