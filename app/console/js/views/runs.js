// Run history the viewer may see, newest first, filtered by status.
import { useState } from "preact/hooks";
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
import { dateTime, word } from "../format.js";

const STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
const RUNS = `query Runs($status: [RunStatus!], $first: Int!, $after: String) {
  runs(status: $status, first: $first, after: $after) {
    totalCount totalCountIsExact
    pageInfo { hasNextPage endCursor }
    edges { node {
      id flowName status priority enqueuedAt startedAt finishedAt failureReason
      group { id name } machine { name } startedBy { name }
    } }
  }
}`;
const COLUMNS = [
  "Flow", "Status", "Priority", "Group", "Machine", "Started by", "Queued", "Finished", "Reason",
];

export function RunsPage() {
  const [status, setStatus] = useState("");
  const list = usePages(
    async (first, after) =>
      (await gql(RUNS, { status: status ? [status] : null, first, after })).runs,
    [status],
  );
  return html`
    <${PageTitle}>Runs<//>
    <p class="lead">Desktop flow runs on the groups and machines you can see, newest first.</p>
    <div class="filter">
      <label for="run-status">Status</label>
      <select
        id="run-status"
        value=${status}
        onChange=${(event) => {
          setStatus(event.currentTarget.value);
          list.firstPage();
        }}
      >
        <option value="">All statuses</option>
        ${STATUSES.map((value) => html`<option value=${value}>${word(value)}</option>`)}
      </select>
    </div>
    ${list.error && html`<${Problem} message=${list.error} retry=${list.reload} />`}
    ${list.loading && html`<${Loading} what="Loading runs…" />`}
    ${list.page && !list.rows.length &&
    html`<${Empty}>
      <p>
        ${status
          ? `No run is ${word(status).toLowerCase()}. Choose “All statuses” to see every run.`
          : "No runs yet. Start one through a connection to a group (startRun); it appears here."}
      </p>
    <//>`}
    ${list.rows.length > 0 &&
    html`<${DataTable} testid="runs" columns=${COLUMNS}>
      ${list.rows.map(
        (run) => html`<tr data-run=${run.id}>
          <${Cell} label="Flow">${run.flowName}<//>
          <${Cell} label="Status"><${StatusBadge} value=${run.status} /><//>
          <${Cell} label="Priority">${word(run.priority)}<//>
          <${Cell} label="Group">
            ${run.group ? html`<a href=${groupHref(run.group.id)}>${run.group.name}</a>` : "—"}
          <//>
          <${Cell} label="Machine">${run.machine?.name || "—"}<//>
          <${Cell} label="Started by">${run.startedBy.name}<//>
          <${Cell} label="Queued">${dateTime(run.enqueuedAt)}<//>
          <${Cell} label="Finished">${dateTime(run.finishedAt)}<//>
          <${Cell} label="Reason">${run.failureReason || "—"}<//>
        </tr>`,
      )}
    <//>`}
    ${list.pager && html`<${Pager} label="Run pages" ...${list.pager} />`}
  `;
}
