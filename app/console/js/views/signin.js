// Sign-in: paste a bearer token. It is checked with `me`, then kept in this tab's
// sessionStorage (never in the URL, gone when the tab closes).
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { ME, gql } from "../api.js";
import { PageTitle } from "../components.js";

export function SignIn({ notice, onSignedIn }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    const pasted = token.trim().replace(/^Bearer\s+/i, "");
    if (!pasted) {
      setError("Paste a token first.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const data = await gql(ME, {}, pasted);
      onSignedIn(pasted, data.me);
    } catch (failure) {
      setError(failure.message);
      setBusy(false);
    }
  };

  return html`<main id="main" class="signin">
    <${PageTitle}>Machine groups console<//>
    <p class="lead">
      Pool the machines that run your desktop flows, share them, and watch their queues live.
    </p>
    ${notice && html`<p class="notice" role="alert">${notice}</p>`}
    <form onSubmit=${submit} class="card" aria-busy=${busy}>
      <h2>Sign in</h2>
      <label for="token">Bearer token</label>
      <textarea
        id="token"
        name="token"
        rows="4"
        autocomplete="off"
        spellcheck="false"
        aria-describedby=${error ? "token-hint token-error" : "token-hint"}
        aria-invalid=${error ? "true" : undefined}
        value=${token}
        onInput=${(event) => setToken(event.currentTarget.value)}
      ></textarea>
      <p class="hint" id="token-hint">
        Mint one on the server's machine with
        <code>.venv/bin/machine-groups token admin</code> (or another user's name). It stays in
        this browser tab only and is forgotten when you sign out or close the tab.
      </p>
      ${error && html`<p class="field-error" id="token-error" role="alert">${error}</p>`}
      <button type="submit" class="primary" disabled=${busy}>
        ${busy ? "Signing in…" : "Sign in"}
      </button>
    </form>
  </main>`;
}
