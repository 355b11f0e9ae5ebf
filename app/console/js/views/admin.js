// For system administrators: the policy in force (and the last rejected edit), and the
// audit trail of security events.
import { html } from "../html.js";
import { gql } from "../api.js";
import {
  Cell,
  DataTable,
  Empty,
  Loading,
  PageTitle,
  Pager,
  Problem,
  useLoad,
  usePages,
} from "../components.js";
import { dateTime } from "../format.js";

const POLICY = `query Policy { policyStatus { loadedAt checksum lastError } }`;
const AUDIT = `query Audit($first: Int!, $after: String) {
  auditLog(first: $first, after: $after) {
    totalCount totalCountIsExact
    pageInfo { hasNextPage endCursor }
    edges { node {
      id at kind outcome recordKind recordId detail actor { name } subjectUser { name }
    } }
  }
}`;

export function AdminPage({ me }) {
  if (!me.securityRoles.includes("SYSTEM_ADMINISTRATOR")) {
    return html`<${PageTitle}>Administration<//>
      <p>This page is for system administrators. <a href="#/groups">Go to the machine groups</a>.</p>`;
  }
  return html`<${PageTitle}>Administration<//>
    <${Policy} />
    <${Audit} />`;
}

function Policy() {
  const policy = useLoad(async () => (await gql(POLICY)).policyStatus, []);
  const status = policy.data;
  return html`<section aria-labelledby="policy-title" class="card">
    <h2 id="policy-title">Policy</h2>
    ${policy.error && html`<${Problem} message=${policy.error} retry=${policy.reload} />`}
    ${policy.loading && html`<${Loading} what="Loading the policy status…" />`}
    ${status &&
    html`<dl class="facts">
        <div><dt>Loaded</dt><dd>${dateTime(status.loadedAt)}</dd></div>
        <div><dt>Checksum</dt><dd class="mono">${status.checksum.slice(0, 16)}</dd></div>
      </dl>
      ${status.lastError
        ? html`<div class="problem" data-testid="policy-error">
            <p><strong>The newest edit of policies/ was rejected</strong>; the previous policy stays in force:</p>
            <pre>${status.lastError}</pre>
          </div>`
        : html`<p class="ok-text">The policy files in force are the newest edit; no error.</p>`}
      <button type="button" onClick=${policy.reload}>Check again</button>`}
  </section>`;
}

function Audit() {
  const list = usePages(async (first, after) => (await gql(AUDIT, { first, after })).auditLog, []);
  return html`<section aria-labelledby="audit-title">
    <h2 id="audit-title">Audit trail</h2>
    ${list.error && html`<${Problem} message=${list.error} retry=${list.reload} />`}
    ${list.loading && html`<${Loading} what="Loading the audit trail…" />`}
    ${list.page && !list.rows.length && html`<${Empty}><p>No security event yet.</p><//>`}
    ${list.rows.length > 0 &&
    html`<${DataTable}
      testid="audit"
      columns=${["When", "Event", "Outcome", "By", "Record", "About", "Detail"]}
    >
      ${list.rows.map(
        (entry) => html`<tr>
          <${Cell} label="When">${dateTime(entry.at)}<//>
          <${Cell} label="Event">${entry.kind.replaceAll("_", " ").toLowerCase()}<//>
          <${Cell} label="Outcome">${entry.outcome === "SUCCESS" ? "Success" : "Failure"}<//>
          <${Cell} label="By">${entry.actor?.name || "the service"}<//>
          <${Cell} label="Record">
            ${entry.recordKind ? `${entry.recordKind.replaceAll("_", " ")} ${entry.recordId}` : "—"}
          <//>
          <${Cell} label="About">${entry.subjectUser?.name || "—"}<//>
          <${Cell} label="Detail" class="mono small">
            ${entry.detail ? JSON.stringify(entry.detail) : "—"}
          <//>
        </tr>`,
      )}
    <//>`}
    ${list.pager && html`<${Pager} label="Audit trail pages" ...${list.pager} />`}
  </section>`;
}
