// The console: sign-in, then the pages, all through the public GraphQL API.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { ME, gql, whenUnauthorized } from "./api.js";
import { closeLive, whenRefused } from "./live.js";
import { forgetToken, storeToken, storedToken } from "./session.js";
import { useRoute } from "./router.js";
import { LiveBadge, Loading, PageTitle, Problem } from "./components.js";
import { role } from "./format.js";
import { SignIn } from "./views/signin.js";
import { GroupsPage } from "./views/groups.js";
import { GroupPage } from "./views/group.js";
import { MachinesPage } from "./views/machines.js";
import { RunsPage } from "./views/runs.js";
import { AdminPage } from "./views/admin.js";



function App() {
  const [session, setSession] = useState(() =>
    storedToken() ? { status: "checking" } : { status: "signed-out" },
  );

  const signOut = (notice = null) => {
    forgetToken();
    closeLive();
    setSession({ status: "signed-out", notice });
  };

  const check = () => {
    setSession({ status: "checking" });
    gql(ME)
      .then((data) => setSession({ status: "signed-in", me: data.me }))
      .catch((error) => {
        if (!error.unauthorized) setSession({ status: "error", error: error.message });
      });
  };

  useEffect(() => {
    whenUnauthorized((message) =>
      signOut(`The server refused your token (${message}). Paste a new token to sign in again.`),
    );
    whenRefused((reason) =>
      signOut(`The server closed your session (${reason}). Paste a new token to sign in again.`),
    );
    if (storedToken()) check();
  }, []);

  if (session.status === "signed-out") {
    return html`<${SignIn}
      notice=${session.notice}
      onSignedIn=${(token, me) => {
        storeToken(token);
        setSession({ status: "signed-in", me });
      }}
    />`;
  }
  if (session.status === "checking") {
    return html`<main class="boot"><${Loading} what="Checking your token…" /></main>`;
  }
  if (session.status === "error") {
    return html`<main class="boot">
      <${PageTitle}>Machine groups console<//>
      <${Problem} message=${session.error} retry=${check} />
      <button type="button" onClick=${() => signOut()}>Sign out</button>
    </main>`;
  }
  return html`<${Shell} me=${session.me} onSignOut=${() => signOut()} />`;
}

const NAV = [
  ["groups", "Machine groups"],
  ["machines", "Machines"],
  ["runs", "Runs"],
];

function Shell({ me, onSignOut }) {
  const route = useRoute();
  const isAdmin = me.securityRoles.includes("SYSTEM_ADMINISTRATOR");
  const section = route.parts[0] || "groups";
  const links = isAdmin ? [...NAV, ["admin", "Administration"]] : NAV;
  const skip = (event) => {
    event.preventDefault();
    document.getElementById("main")?.focus();
  };
  return html`
    <a class="skip" href="#main" onClick=${skip}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/groups">Machine groups</a>
      <nav aria-label="Main">
        <ul>
          ${links.map(
            ([path, label]) => html`<li>
              <a href=${`#/${path}`} aria-current=${section === path ? "page" : undefined}
                >${label}</a
              >
            </li>`,
          )}
          <li><a href="/graphql">GraphiQL</a></li>
        </ul>
      </nav>
      <div class="who">
        <p>
          Signed in as <strong data-testid="me-name">${me.name}</strong>
          <span class="roles" data-testid="me-roles">
            ${me.securityRoles.length
              ? me.securityRoles.map(role).join(", ")
              : "no security roles"}</span
          >
        </p>
        <button type="button" onClick=${onSignOut}>Sign out</button>
      </div>
      <${LiveBadge} />
    </header>
    <main id="main" tabindex="-1">${page(route, me)}</main>
  `;
}

function page(route, me) {
  const [section, id] = route.parts;
  switch (section || "groups") {
    case "groups":
      return id ? html`<${GroupPage} key=${id} id=${id} me=${me} />` : html`<${GroupsPage} me=${me} />`;
    case "machines":
      return html`<${MachinesPage} />`;
    case "runs":
      return html`<${RunsPage} />`;
    case "admin":
      return html`<${AdminPage} me=${me} />`;
    default:
      return html`<${PageTitle}>Page not found<//>
        <p>There is no page at this address. <a href="#/groups">Go to the machine groups</a>.</p>`;
  }
}

render(html`<${App} />`, document.getElementById("app"));
