// Live data over WebSocket (graphql-transport-ws) with the reference client, graphql-ws.
// One socket for the whole console: it opens with the first live view, sends the token in
// connection_init, reconnects with backoff when cut, and closes when no view needs it.
import { createClient } from "graphql-ws";
import { storedToken } from "./session.js";

const url = new URL("/graphql", window.location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";

// 4401/4403: the server refused the token or closed the socket for the user (deactivated,
// expired): reconnecting would not help.
const REFUSED = new Set([4401, 4403]);

let client = null;
let state = "idle";
const listeners = new Set();

function setState(next) {
  state = next;
  for (const listener of listeners) listener(next);
}

/** The socket's state: idle, connecting, live, reconnecting or refused. */
export function liveState() {
  return state;
}

/** Call `listener(state)` on every change; returns a function that stops it. */
export function onLiveState(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

let onRefused = () => {};

/** Called with the close reason when the server refuses the socket for the user. */
export function whenRefused(callback) {
  onRefused = callback;
}

function theClient() {
  if (client) return client;
  client = createClient({
    url: url.href,
    connectionParams: () => ({ authorization: `Bearer ${storedToken()}` }),
    lazy: true,
    lazyCloseTimeout: 1000,
    keepAlive: 15000,
    retryAttempts: Infinity,
    shouldRetry: (event) => !(event && REFUSED.has(event.code)),
    retryWait: (retries) =>
      new Promise((resolve) => setTimeout(resolve, Math.min(10000, 500 * 2 ** retries))),
    on: {
      connecting: (isRetry) => setState(isRetry ? "reconnecting" : "connecting"),
      connected: () => setState("live"),
      closed: (event) => {
        if (event && REFUSED.has(event.code)) {
          setState("refused");
          onRefused(event.reason || "The server closed the live connection.");
        } else {
          setState("idle");
        }
      },
    },
  });
  return client;
}

/**
 * Subscribe to one operation: `next(data)` per message, `complete()` when the server ends
 * the stream (for queueStatus: the viewer stopped seeing the group), `error(message)`.
 * Returns a function that unsubscribes.
 */
export function subscribe(query, variables, { next, complete = () => {}, error = () => {} }) {
  let ended = false;
  const dispose = theClient().subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.errors?.length) {
          ended = true;
          error(result.errors.map((each) => each.message).join("; "));
        } else if (result.data) {
          next(result.data);
        }
      },
      error: (cause) => {
        if (ended) return;
        ended = true;
        const messages = Array.isArray(cause) ? cause.map((each) => each.message) : [];
        error(messages.join("; ") || cause?.reason || "The live connection failed.");
      },
      complete: () => {
        if (ended) return;
        ended = true;
        complete();
      },
    },
  );
  return () => {
    ended = true;
    dispose();
  };
}

/** Close the socket (on sign-out): the next live view opens a new one with the new token. */
export function closeLive() {
  if (client) {
    const closing = client;
    client = null;
    closing.dispose();
  }
  setState("idle");
}
