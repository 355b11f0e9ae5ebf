// GraphQL over HTTP POST to the public endpoint, with the signed-in bearer token.
import { storedToken } from "./session.js";

const ENDPOINT = new URL("/graphql", window.location.href).href;

export class ApiError extends Error {
  constructor(message, { status = 0, unauthorized = false } = {}) {
    super(message);
    this.status = status;
    this.unauthorized = unauthorized;
  }
}

let onUnauthorized = () => {};

/** Called with the server's message when it refuses the token (HTTP 401). */
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

/** Run one operation; resolves to its `data`, rejects with an ApiError in the API's words. */
export async function gql(query, variables = {}, token = storedToken()) {
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("The server cannot be reached. Check that it is running, then retry.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const messages = (body?.errors || []).map((error) => error.message).filter(Boolean);
  if (response.status === 401) {
    const error = new ApiError(messages[0] || "The server refused the token.", {
      status: 401,
      unauthorized: true,
    });
    // Only the signed-in session's token signs the user out; a token being tried does not.
    if (token === storedToken()) onUnauthorized(error.message);
    throw error;
  }
  if (!response.ok && !body?.data) {
    throw new ApiError(messages.join("; ") || `The server answered HTTP ${response.status}.`, {
      status: response.status,
    });
  }
  if (messages.length) throw new ApiError(messages.join("; "), { status: response.status });
  return body.data;
}

/** Run a single mutation; resolves to its payload ({..., errors: [{code, message, field}]}). */
export async function mutate(query, variables = {}) {
  const data = await gql(query, variables);
  return Object.values(data)[0];
}

/** Who the token names: the console's header shows it. */
export const ME = "query Me { me { id name premium securityRoles } }";
