// GraphiQL on the vendored UMD bundles (window.React, window.ReactDOM, window.GraphiQL).
// Queries and mutations go over HTTP POST; subscriptions over graphql-transport-ws with
// GraphiQL's own fetcher (its bundled graphql-ws client), whose connection_init payload
// carries the headers of the Headers editor, so the same token authorizes both.
import { TOKEN_KEY } from "./js/session.js";

const { React, ReactDOM, GraphiQL } = window;

const url = new URL("/graphql", window.location.href);
const subscriptionUrl = new URL(url);
subscriptionUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";

const token = window.sessionStorage.getItem(TOKEN_KEY);
const headers = JSON.stringify(
  { Authorization: `Bearer ${token || "<paste a token from: machine-groups token NAME>"}` },
  null,
  2,
);

const query = `# Machine groups API. Every request needs a bearer token: it goes in the
# Headers tab below, as {"Authorization": "Bearer <token>"}. Mint one with
#   machine-groups token admin
# (signed in to the console in this tab, you will find your token there already).
# Run with Ctrl-Enter or the play button; subscriptions (queueStatus, runUpdates)
# stream over a WebSocket that sends the same header.
query Me {
  me { name securityRoles }
}
`;

const graphiqlFetcher = GraphiQL.createFetcher({
  url: url.href,
  subscriptionUrl: subscriptionUrl.href,
});
// GraphiQL fetches the schema before its Headers editor has a value: the console's token
// (when signed in in this tab) goes with every request unless the editor says otherwise.
const signedIn = token ? { Authorization: `Bearer ${token}` } : {};
const fetcher = (params, options = {}) =>
  graphiqlFetcher(params, { ...options, headers: { ...signedIn, ...(options.headers || {}) } });

const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: query,
    initialQuery: query,
    initialHeaders: headers,
    defaultHeaders: headers,
    defaultEditorToolsVisibility: "headers",
    isHeadersEditorEnabled: true,
    // The token stays in this tab: never written to localStorage.
    shouldPersistHeaders: false,
  }),
);
