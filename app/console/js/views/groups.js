// "Machine groups": the seed's list (name, description, machines, running, queued, your
// access, owner), with pagination, a filter by name, and "New machine group". The counts
// move live: one queueStatus subscription per group on the page.
import { useEffect, useState } from "preact/hooks";
import { html } from "../html.js";
import { gql, mutate } from "../api.js";
import { subscribe } from "../live.js";
import { groupHref, takeFlash } from "../router.js";
import {
  Cell,
  Empty,
  FieldErrors,
  Loading,
  PageTitle,
  Pager,
  Problem,
  errorsFor,
  shownTotal,
  useAction,
  useCursors,
  useLoad,
} from "../components.js";
import { level } from "../format.js";

export const PAGE_SIZE = 15; // below the server's 20 operations per socket
const ALL_PAGE = 100;

const GROUP_FIELDS = `id name description myAccess machineCount runningCount queuedCount
  maintenance hasDeactivatedUsers owner { name }`;

const GROUPS = `query Groups($first: Int!, $after: String) {
  machineGroups(first: $first, after: $after) {
    totalCount totalCountIsExact
    pageInfo { hasNextPage endCursor }
    edges { node { ${GROUP_FIELDS} } }
  }
}`;

const CREATE = `mutation CreateGroup($name: String!, $description: String) {
  createMachineGroup(input: {name: $name, description: $description}) {
    machineGroup { id name }
    errors { code message field }
  }
}`;

export const QUEUE_STATUS = `subscription QueueStatus($groupId: ID!) {
  queueStatus(groupId: $groupId) {
    groupId queuedCount runningCount machineCount onlineMachineCount idleMachineCount
    changedRun { id status }
    at
  }
}`;

async function allGroups() {
  const groups = [];
  let after = null;
  for (;;) {
    const data = await gql(GROUPS, { first: ALL_PAGE, after });
    const page = data.machineGroups;
    groups.push(...page.edges.map((edge) => edge.node));
    if (!page.pageInfo.hasNextPage) return groups;
    after = page.pageInfo.endCursor;
  }
}

export function GroupsPage({ me }) {
  const cursors = useCursors();
  const [filter, setFilter] = useState("");
  const [filterPage, setFilterPage] = useState(0);
  const [version, setVersion] = useState(0);
  const [flash, setFlash] = useState(takeFlash);
  const needle = filter.trim().toLowerCase();

  // Without a filter, one page from the server; with one, every group the viewer sees
  // (the API has no name filter), matched here.
  const groups = useLoad(
    async () => {
      if (!needle) {
        const page = (await gql(GROUPS, { first: PAGE_SIZE, after: cursors.after }))
          .machineGroups;
        return {
          rows: page.edges.map((edge) => edge.node),
          total: shownTotal(page),
          from: cursors.index * PAGE_SIZE + 1,
          hasNext: page.pageInfo.hasNextPage,
          endCursor: page.pageInfo.endCursor,
        };
      }
      const matches = (await allGroups()).filter((group) =>
        group.name.toLowerCase().includes(needle),
      );
      return { matches };
    },
    [cursors.after, needle, version],
  );

  let view = null;
  if (groups.data) {
    if (groups.data.matches) {
      const { matches } = groups.data;
      const start = filterPage * PAGE_SIZE;
      view = {
        rows: matches.slice(start, start + PAGE_SIZE),
        total: matches.length,
        from: start + 1,
        hasPrevious: filterPage > 0,
        hasNext: start + PAGE_SIZE < matches.length,
        onPrevious: () => setFilterPage(filterPage - 1),
        onNext: () => setFilterPage(filterPage + 1),
      };
    } else {
      const data = groups.data;
      view = {
        ...data,
        hasPrevious: cursors.index > 0,
        onPrevious: cursors.previous,
        onNext: () => cursors.next(data.endCursor),
      };
    }
  }

  const created = (group) => {
    setFlash(`Created machine group “${group.name}”.`);
    setFilter("");
    cursors.reset();
    setVersion(version + 1);
  };

  return html`
    <${PageTitle}>Machine groups<//>
    <p class="lead">
      Groups pool the machines that run desktop flows. Runs started on a group wait in its
      queue until one of its machines is free.
    </p>
    ${flash && html`<p class="flash" role="status">${flash}</p>`}
    <${CreateGroup} onCreated=${created} />
    <section aria-labelledby="list-title">
      <div class="section-head">
        <h2 id="list-title">Your machine groups</h2>
        <div class="filter">
          <label for="group-filter">Filter by name</label>
          <input
            id="group-filter"
            type="search"
            value=${filter}
            onInput=${(event) => {
              setFilter(event.currentTarget.value);
              setFilterPage(0);
            }}
          />
        </div>
      </div>
      ${groups.error && html`<${Problem} message=${groups.error} retry=${groups.reload} />`}
      ${groups.loading && html`<${Loading} what="Loading machine groups…" />`}
      ${view && html`<${GroupTable} rows=${view.rows} needle=${needle} />`}
      ${view &&
      html`<${Pager}
        label="Machine group pages"
        from=${view.from}
        to=${view.from + view.rows.length - 1}
        total=${view.total}
        hasPrevious=${view.hasPrevious}
        hasNext=${view.hasNext}
        onPrevious=${view.onPrevious}
        onNext=${view.onNext}
      />`}
    </section>
  `;
}

function GroupTable({ rows, needle }) {
  const [live, setLive] = useState({});
  const ids = rows.map((group) => group.id).join(",");

  useEffect(() => {
    setLive({});
    const stops = rows.map((group) =>
      subscribe(QUEUE_STATUS, { groupId: group.id }, {
        next: ({ queueStatus }) =>
          setLive((before) => ({ ...before, [group.id]: { ...queueStatus, gone: false } })),
        complete: () => setLive((before) => ({ ...before, [group.id]: { gone: true } })),
        error: () => setLive((before) => ({ ...before, [group.id]: { gone: true } })),
      }),
    );
    return () => stops.forEach((stop) => stop());
  }, [ids]);

  if (!rows.length) {
    return html`<${Empty}>
      ${needle
        ? html`<p>No machine group you can see has “${needle}” in its name. Clear the filter to see them all.</p>`
        : html`<p>
            You do not see any machine group yet. Create one above, or ask a group's owner
            to share it with you in its “Manage access”.
          </p>`}
    <//>`;
  }
  return html`<div class="table-wrap">
    <table class="groups">
      <caption class="visually-hidden">Machine groups you can see, with live counts</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Description</th>
          <th scope="col" class="num">Machines</th>
          <th scope="col" class="num">Running</th>
          <th scope="col" class="num">Queued</th>
          <th scope="col">Your access</th>
          <th scope="col">Owner</th>
        </tr>
      </thead>
      <tbody>
        ${rows.map((group) => {
          const counts = live[group.id] || {};
          if (counts.gone) {
            return html`<tr data-group=${group.id} class="gone">
              <${Cell} label="Name">${group.name}<//>
              <td colspan="6" data-label="Access">You no longer have access to this group.</td>
            </tr>`;
          }
          const value = (name) => (name in counts ? counts[name] : group[name]);
          return html`<tr data-group=${group.id}>
            <${Cell} label="Name">
              <a href=${groupHref(group.id)}>${group.name}</a>
              ${group.maintenance && html` <span class="badge badge-maintenance">Maintenance</span>`}
              ${group.hasDeactivatedUsers &&
              html` <span class="badge badge-warn">Shared with deactivated users</span>`}
            <//>
            <${Cell} label="Description">${group.description || html`<span class="muted">—</span>`}<//>
            <${Cell} label="Machines" class="num"><span data-count="machines">${value("machineCount")}</span><//>
            <${Cell} label="Running" class="num"><span data-count="running">${value("runningCount")}</span><//>
            <${Cell} label="Queued" class="num"><span data-count="queued">${value("queuedCount")}</span><//>
            <${Cell} label="Your access">${level(group.myAccess)}<//>
            <${Cell} label="Owner">${group.owner.name}<//>
          </tr>`;
        })}
      </tbody>
    </table>
  </div>`;
}

function CreateGroup({ onCreated }) {
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const { errors, busy, act } = useAction();

  const submit = async (event) => {
    event.preventDefault();
    const payload = await act(() => mutate(CREATE, { name, description: description || null }));
    if (payload) {
      setName("");
      setDescription("");
      setOpen(false);
      onCreated(payload.machineGroup);
    }
  };

  if (!open) {
    return html`<p>
      <button type="button" class="primary" onClick=${() => setOpen(true)}>
        New machine group
      </button>
    </p>`;
  }
  const nameErrors = errorsFor(errors, "name");
  const descriptionErrors = errorsFor(errors, "description");
  const rest = errorsFor(errors, null, ["name", "description"]);
  return html`<form class="card" onSubmit=${submit} aria-labelledby="create-title">
    <h2 id="create-title">New machine group</h2>
    <label for="new-name">Name</label>
    <input
      id="new-name"
      required
      maxlength="100"
      value=${name}
      aria-invalid=${nameErrors.length ? "true" : undefined}
      aria-describedby=${nameErrors.length ? "new-name-error" : undefined}
      onInput=${(event) => setName(event.currentTarget.value)}
    />
    <${FieldErrors} id="new-name-error" errors=${nameErrors} />
    <label for="new-description">Description <span class="muted">(optional)</span></label>
    <textarea
      id="new-description"
      rows="2"
      maxlength="1000"
      value=${description}
      aria-invalid=${descriptionErrors.length ? "true" : undefined}
      aria-describedby=${descriptionErrors.length ? "new-description-error" : undefined}
      onInput=${(event) => setDescription(event.currentTarget.value)}
    ></textarea>
    <${FieldErrors} id="new-description-error" errors=${descriptionErrors} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${busy}>Create</button>
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    <${FieldErrors} id="new-group-error" errors=${rest} />
  </form>`;
}
