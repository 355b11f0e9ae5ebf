// Machines the viewer may see, with their status and group.
import { html } from "../html.js";
import { gql } from "../api.js";
import { groupHref } from "../router.js";
import {
  Cell,
  DataTable,
  Empty,
  Loading,
  PageTitle,
  Pager,
  Problem,
  StatusBadge,
  usePages,
} from "../components.js";
import { dateTime, machineStatus } from "../format.js";

const MACHINES = `query Machines($first: Int!, $after: String) {
  machines(first: $first, after: $after) {
    totalCount totalCountIsExact
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name description status lastSeenAt owner { name } group { id name }
      currentRun { id flowName }
    } }
  }
}`;

export function MachinesPage() {
  const list = usePages(async (first, after) => (await gql(MACHINES, { first, after })).machines, []);
  return html`
    <${PageTitle}>Machines<//>
    <p class="lead">The machines you can see: yours, and those of the groups shared with you.</p>
    ${list.error && html`<${Problem} message=${list.error} retry=${list.reload} />`}
    ${list.loading && html`<${Loading} what="Loading machines…" />`}
    ${list.page && !list.rows.length &&
    html`<${Empty}>
      <p>
        No machines yet. Register one with <code>registerMachine</code> (it needs a premium
        licence), then run <code>machine-groups agent</code> on it with the machine key.
      </p>
    <//>`}
    ${list.rows.length > 0 &&
    html`<${DataTable} columns=${["Machine", "Status", "Group", "Running", "Owner", "Last seen"]}>
      ${list.rows.map(
        (machine) => html`<tr data-machine=${machine.id}>
          <${Cell} label="Machine">${machine.name}<//>
          <${Cell} label="Status"><${StatusBadge} value=${machineStatus(machine)} /><//>
          <${Cell} label="Group">
            ${machine.group
              ? html`<a href=${groupHref(machine.group.id)}>${machine.group.name}</a>`
              : "Standalone"}
          <//>
          <${Cell} label="Running">${machine.currentRun?.flowName || "—"}<//>
          <${Cell} label="Owner">${machine.owner.name}<//>
          <${Cell} label="Last seen">${dateTime(machine.lastSeenAt)}<//>
        </tr>`,
      )}
    <//>`}
    ${list.pager && html`<${Pager} label="Machine pages" ...${list.pager} />`}
  `;
}
