// A machine group: its machines, its queue in dispatch order, what runs now, what ran;
// maintenance, details, password, access and deletion for those allowed. It follows
// queueStatus: counts change at once, the rest is read again on each change; when the
// stream ends (access revoked, group deleted) the group's data is taken off the page.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { gql, mutate } from "../api.js";
import { subscribe } from "../live.js";
import { go, setFlash } from "../router.js";
import {
  Cell,
  Empty,
  FieldErrors,
  Loading,
  PageTitle,
  Problem,
  StatusBadge,
  DataTable,
  errorsFor,
  useAction,
  useNow,
} from "../components.js";
import { dateTime, elapsedSince, estimate, level, machineStatus, word } from "../format.js";
import { QUEUE_STATUS } from "./groups.js";
import { ManageAccess, RegeneratePassword } from "./access.js";

const GROUP = `query Group($id: ID!) {
  machineGroup(id: $id) {
    id name description myAccess maintenance hasPassword hasDeactivatedUsers createdAt
    machineCount runningCount queuedCount
    environment { id name }
    owner { id name }
    machines { id name status lastSeenAt currentRun { id flowName } }
    queue(first: 50) {
      id flowName priority queuePosition estimatedStartAt enqueuedAt startedBy { id name }
    }
    access { access user { id name deactivated } }
  }
  running: runs(groupId: $id, status: [RUNNING], first: 50) {
    edges { node { id flowName priority startedAt machine { id name } startedBy { id name } } }
  }
  history: runs(groupId: $id, status: [SUCCEEDED, FAILED, CANCELLED, TIMED_OUT], first: 10) {
    edges { node { id flowName status startedAt finishedAt failureReason machine { name } } }
  }
}`;

const ROLES = `query Roles($environmentId: ID) { me { id securityRoles(environmentId: $environmentId) } }`;

const UPDATE = `mutation UpdateGroup($id: ID!, $name: String, $description: String) {
  updateMachineGroup(input: {id: $id, name: $name, description: $description}) {
    machineGroup { id } errors { code message field }
  }
}`;
const MAINTENANCE = `mutation Maintenance($id: ID!, $enabled: Boolean!) {
  setMachineGroupMaintenance(id: $id, enabled: $enabled) {
    machineGroup { id maintenance } errors { code message field }
  }
}`;
const DELETE = `mutation DeleteGroup($id: ID!) {
  deleteMachineGroup(id: $id) { deletedId errors { code message field } }
}`;
const CANCEL = `mutation CancelRun($id: ID!) {
  cancelRun(id: $id) { run { id status } errors { code message field } }
}`;
const PRIORITY = `mutation SetPriority($id: ID!, $priority: RunPriority!) {
  setRunPriority(id: $id, priority: $priority) { run { id priority } errors { code message field } }
}`;

const QUEUE_COLUMNS = [
  ["Position", "num"], "Flow", "Priority", "Queued", "Estimated start", "Started by", "Actions",
];
const OWNERLIKE = ["OWNER", "CO_OWNER"];
const MAKERS = ["ENVIRONMENT_MAKER", "DESKTOP_FLOWS_MACHINE_OWNER"];
const SHARERS = [...MAKERS, "DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE"];

/** What the viewer may do, from both tables (the API decides; this only hides controls
 * that would be refused by the default policy). */
export function rights(group, roles, me) {
  const admin = roles.includes("SYSTEM_ADMINISTRATOR");
  const coOwner = admin || OWNERLIKE.includes(group.myAccess);
  const has = (list) => admin || roles.some((each) => list.includes(each));
  const canShareAsUser =
    group.myAccess === "USER" && roles.includes("DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE");
  return {
    me,
    coOwner,
    edit: coOwner && has(MAKERS),
    share: (coOwner && has(SHARERS)) || canShareAsUser,
    grantCoOwner: coOwner && has(SHARERS),
    revoke: coOwner && has(SHARERS),
    runControl: (run) => coOwner || run.startedBy?.id === me.id,
  };
}

export function GroupPage({ id, me }) {
  const [state, setState] = useState({ loading: true });
  const [live, setLive] = useState(null);
  const [lost, setLost] = useState(null);
  const loading = useRef({ busy: false, again: false });

  const load = async () => {
    if (loading.current.busy) {
      loading.current.again = true;
      return;
    }
    loading.current.busy = true;
    try {
      do {
        loading.current.again = false;
        const data = await gql(GROUP, { id });
        if (!data.machineGroup) {
          setLost("This group does not exist, or you no longer have access to it.");
          setState({ loading: false });
          return;
        }
        const roles = (await gql(ROLES, { environmentId: data.machineGroup.environment.id })).me
          .securityRoles;
        setState({ loading: false, data, roles });
      } while (loading.current.again);
    } catch (failure) {
      setState((before) => ({ ...before, loading: false, error: failure.message }));
    } finally {
      loading.current.busy = false;
    }
  };

  useEffect(() => {
    load();
    // Every message, the first too (the page may have been read just before a change the
    // snapshot already counts), reads the page again; reads coalesce while one runs.
    const stop = subscribe(QUEUE_STATUS, { groupId: id }, {
      next: ({ queueStatus }) => {
        setLive(queueStatus);
        load();
      },
      complete: () => setLost("You no longer have access to this group."),
      error: (message) => setLost(`You no longer have access to this group (${message}).`),
    });
    return stop;
  }, [id]);

  if (lost) {
    return html`<${PageTitle}>Machine group<//>
      <div class="problem" role="alert" data-testid="lost-access">
        <p>${lost}</p>
        <p><a href="#/groups">Back to the machine groups you can see</a></p>
      </div>`;
  }
  if (state.error && !state.data) {
    return html`<${PageTitle}>Machine group<//>
      <${Problem} message=${state.error} retry=${load} />`;
  }
  if (!state.data) {
    return html`<${PageTitle}>Machine group<//><${Loading} what="Loading the group…" />`;
  }
  const { data, roles } = state;
  const group = data.machineGroup;
  const can = rights(group, roles, me);
  const counts = live || group;
  return html`
    <p class="crumbs"><a href="#/groups">Machine groups</a> ›</p>
    <${PageTitle}>${group.name}<//>
    ${group.description && html`<p class="lead">${group.description}</p>`}
    ${state.error && html`<${Problem} message=${state.error} retry=${load} />`}
    <dl class="facts" aria-label="Live counts">
      <div><dt>Machines</dt><dd data-count="machines">${counts.machineCount}</dd></div>
      <div><dt>Online</dt><dd data-count="online">${live ? live.onlineMachineCount : "…"}</dd></div>
      <div><dt>Idle</dt><dd data-count="idle">${live ? live.idleMachineCount : "…"}</dd></div>
      <div><dt>Running</dt><dd data-count="running">${counts.runningCount}</dd></div>
      <div><dt>Queued</dt><dd data-count="queued">${counts.queuedCount}</dd></div>
      <div><dt>Your access</dt><dd>${level(group.myAccess)}</dd></div>
      <div><dt>Owner</dt><dd>${group.owner.name}</dd></div>
      <div><dt>Environment</dt><dd>${group.environment.name}</dd></div>
    </dl>
    ${group.maintenance &&
    html`<p class="notice">This group is in maintenance: its machines take no new runs; runs
      keep queuing.</p>`}
    <${Machines} group=${group} />
    <${Queue} group=${group} can=${can} reload=${load} />
    <${Running} runs=${data.running.edges.map((edge) => edge.node)} can=${can} reload=${load} />
    <${History} runs=${data.history.edges.map((edge) => edge.node)} />
    ${can.share && html`<${ManageAccess} group=${group} can=${can} reload=${load} />`}
    ${can.edit && html`<${Settings} group=${group} reload=${load} />`}
  `;
}

function Machines({ group }) {
  return html`<section aria-labelledby="machines-title">
    <h2 id="machines-title">Machines</h2>
    ${group.machines.length
      ? html`<${DataTable} columns=${["Machine", "Status", "Running", "Last seen"]}>
            ${group.machines.map(
              (machine) => html`<tr data-machine=${machine.id}>
                <${Cell} label="Machine">${machine.name}<//>
                <${Cell} label="Status"><${StatusBadge} value=${machineStatus(machine)} /><//>
                <${Cell} label="Running">${machine.currentRun?.flowName || "—"}<//>
                <${Cell} label="Last seen">${dateTime(machine.lastSeenAt)}<//>
              </tr>`,
            )}
        <//>`
      : html`<${Empty}>
          <p>
            No machines yet: a group needs at least one machine to run desktop flows. On a
            machine you registered, its owner adds it with <code>addMachineToGroup</code>
            (the first one sets the group password).
          </p>
        <//>`}
  </section>`;
}

function Queue({ group, can, reload }) {
  const now = useNow(5000);
  return html`<section aria-labelledby="queue-title">
    <h2 id="queue-title">Queue</h2>
    ${group.queue.length
      ? html`<${DataTable}
          testid="queue"
          caption="Queued runs in dispatch order"
          columns=${QUEUE_COLUMNS}
        >
            ${group.queue.map(
              (run) => html`<tr data-run=${run.id}>
                <${Cell} label="Position" class="num">${run.queuePosition}<//>
                <${Cell} label="Flow">${run.flowName}<//>
                <${Cell} label="Priority">
                  ${can.runControl(run)
                    ? html`<${PriorityControl} run=${run} reload=${reload} />`
                    : word(run.priority)}
                <//>
                <${Cell} label="Queued">${dateTime(run.enqueuedAt)}<//>
                <${Cell} label="Estimated start">${estimate(run.estimatedStartAt, now)}<//>
                <${Cell} label="Started by">${run.startedBy.name}<//>
                <${Cell} label="Actions">
                  ${can.runControl(run) && html`<${CancelControl} run=${run} reload=${reload} />`}
                <//>
              </tr>`,
            )}
        <//>`
      : html`<${Empty}>
          <p>
            Nothing is queued. Runs started through a connection to this group
            (<code>startRun</code>) wait here until a machine is free.
          </p>
        <//>`}
  </section>`;
}

function Running({ runs, can, reload }) {
  const now = useNow(1000);
  return html`<section aria-labelledby="running-title">
    <h2 id="running-title">Running</h2>
    ${runs.length
      ? html`<${DataTable}
          testid="running"
          columns=${["Flow", "Machine", "Started", "Elapsed", "Started by", "Actions"]}
        >
            ${runs.map(
              (run) => html`<tr data-run=${run.id}>
                <${Cell} label="Flow">${run.flowName}<//>
                <${Cell} label="Machine">${run.machine?.name || "—"}<//>
                <${Cell} label="Started">${dateTime(run.startedAt)}<//>
                <${Cell} label="Elapsed">${elapsedSince(run.startedAt, now)}<//>
                <${Cell} label="Started by">${run.startedBy.name}<//>
                <${Cell} label="Actions">
                  ${can.runControl(run) && html`<${CancelControl} run=${run} reload=${reload} />`}
                <//>
              </tr>`,
            )}
        <//>`
      : html`<${Empty}><p>No run is running now. Idle machines claim the next queued run.</p><//>`}
  </section>`;
}

function History({ runs }) {
  return html`<section aria-labelledby="history-title">
    <h2 id="history-title">Recent history</h2>
    ${runs.length
      ? html`<${DataTable}
          testid="history"
          columns=${["Flow", "Result", "Machine", "Finished", "Reason"]}
        >
            ${runs.map(
              (run) => html`<tr data-run=${run.id}>
                <${Cell} label="Flow">${run.flowName}<//>
                <${Cell} label="Result"><${StatusBadge} value=${run.status} /><//>
                <${Cell} label="Machine">${run.machine?.name || "—"}<//>
                <${Cell} label="Finished">${dateTime(run.finishedAt)}<//>
                <${Cell} label="Reason">${run.failureReason || "—"}<//>
              </tr>`,
            )}
        <//>`
      : html`<${Empty}><p>No run has finished here yet. See all runs on the <a href="#/runs">Runs</a> page.</p><//>`}
  </section>`;
}

function CancelControl({ run, reload }) {
  const { errors, busy, act } = useAction();
  const errorId = `cancel-error-${run.id}`;
  return html`<button
      type="button"
      disabled=${busy}
      aria-describedby=${errors.length ? errorId : undefined}
      onClick=${async () => (await act(() => mutate(CANCEL, { id: run.id }))) && reload()}
    >
      Cancel run<span class="visually-hidden"> ${run.flowName}</span>
    </button>
    <${FieldErrors} id=${errorId} errors=${errors} />`;
}

function PriorityControl({ run, reload }) {
  const { errors, busy, act } = useAction();
  const id = `priority-${run.id}`;
  return html`<label class="visually-hidden" for=${id}>Priority of ${run.flowName}</label>
    <select
      id=${id}
      disabled=${busy}
      aria-describedby=${errors.length ? `${id}-error` : undefined}
      onChange=${async (event) =>
        (await act(() => mutate(PRIORITY, { id: run.id, priority: event.currentTarget.value }))) && reload()}
    >
      ${["HIGH", "NORMAL", "LOW"].map(
        (value) => html`<option value=${value} selected=${run.priority === value}>${word(value)}</option>`,
      )}
    </select>
    <${FieldErrors} id=${`${id}-error`} errors=${errors} />`;
}

function Settings({ group, reload }) {
  return html`<section aria-labelledby="settings-title" class="settings">
    <h2 id="settings-title">Group settings</h2>
    <${MaintenanceSwitch} group=${group} reload=${reload} />
    <${EditDetails} group=${group} reload=${reload} />
    <${RegeneratePassword} group=${group} />
    <${DeleteGroup} group=${group} />
  </section>`;
}

function MaintenanceSwitch({ group, reload }) {
  const { errors, busy, act } = useAction();
  const toggle = async () =>
    (await act(() => mutate(MAINTENANCE, { id: group.id, enabled: !group.maintenance }))) && reload();
  return html`<div class="card">
    <h3 id="maintenance-title">Maintenance</h3>
    <p class="hint" id="maintenance-hint">
      In maintenance the group dispatches nothing: runs keep queuing, running runs finish.
    </p>
    <button
      type="button"
      role="switch"
      class="switch"
      aria-checked=${group.maintenance ? "true" : "false"}
      aria-labelledby="maintenance-title"
      aria-describedby=${errors.length ? "maintenance-hint maintenance-error" : "maintenance-hint"}
      disabled=${busy}
      onClick=${toggle}
    >
      <span aria-hidden="true">${group.maintenance ? "On" : "Off"}</span>
    </button>
    <${FieldErrors} id="maintenance-error" errors=${errors} />
  </div>`;
}

function EditDetails({ group, reload }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState(group.name);
  const [description, setDescription] = useState(group.description || "");
  const { errors, busy, act } = useAction();
  const submit = async (event) => {
    event.preventDefault();
    if (await act(() => mutate(UPDATE, { id: group.id, name, description }))) {
      setOpen(false);
      reload();
    }
  };
  if (!open) {
    return html`<div class="card">
      <h3>Details</h3>
      <button type="button" onClick=${() => {
        setName(group.name);
        setDescription(group.description || "");
        setOpen(true);
      }}>Edit details</button>
    </div>`;
  }
  const nameErrors = errorsFor(errors, "name");
  const descriptionErrors = errorsFor(errors, "description");
  return html`<form class="card" onSubmit=${submit} aria-labelledby="edit-title">
    <h3 id="edit-title">Edit details</h3>
    <label for="edit-name">Name</label>
    <input
      id="edit-name"
      value=${name}
      aria-invalid=${nameErrors.length ? "true" : undefined}
      aria-describedby=${nameErrors.length ? "edit-name-error" : undefined}
      onInput=${(event) => setName(event.currentTarget.value)}
    />
    <${FieldErrors} id="edit-name-error" errors=${nameErrors} />
    <label for="edit-description">Description</label>
    <textarea
      id="edit-description"
      rows="2"
      value=${description}
      aria-invalid=${descriptionErrors.length ? "true" : undefined}
      aria-describedby=${descriptionErrors.length ? "edit-description-error" : undefined}
      onInput=${(event) => setDescription(event.currentTarget.value)}
    ></textarea>
    <${FieldErrors} id="edit-description-error" errors=${descriptionErrors} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy}>Save</button>
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    <${FieldErrors} id="edit-error" errors=${errorsFor(errors, null, ["name", "description"])} />
  </form>`;
}

function DeleteGroup({ group }) {
  const [confirming, setConfirming] = useState(false);
  const { errors, busy, act } = useAction();
  const remove = async () => {
    if (await act(() => mutate(DELETE, { id: group.id }))) {
      setFlash(`Deleted machine group “${group.name}”.`);
      go("/groups");
    } else {
      setConfirming(false);
    }
  };
  return html`<div class="card danger-zone">
    <h3>Delete group</h3>
    <p class="hint">Only a group without machines can be deleted; its queued runs are cancelled.</p>
    ${confirming
      ? html`<p>Delete “${group.name}” for everyone?</p>
          <div class="actions">
            <button type="button" class="danger" disabled=${busy} onClick=${remove}>
              Yes, delete the group
            </button>
            <button type="button" onClick=${() => setConfirming(false)}>Keep it</button>
          </div>`
      : html`<button
          type="button"
          class="danger"
          aria-describedby=${errors.length ? "delete-error" : undefined}
          onClick=${() => setConfirming(true)}
        >
          Delete group
        </button>`}
    <${FieldErrors} id="delete-error" errors=${errors} />
  </div>`;
}
