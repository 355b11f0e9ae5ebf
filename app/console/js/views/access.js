// "Manage access" (owner first, the deactivated-users notice, add people, revoke) and
// "Re-generate password" (shown once, with a copy button).
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { gql, mutate } from "../api.js";
import { Cell, DataTable, FieldErrors, errorsFor, useAction } from "../components.js";
import { level } from "../format.js";

const USER_BY_NAME = `query UserByName($name: String!) { userByName(name: $name) { id name deactivated } }`;
const SHARE = `mutation Share($groupId: ID!, $userId: ID!, $access: ShareLevel!) {
  shareMachineGroup(input: {groupId: $groupId, userId: $userId, access: $access}) {
    grant { access user { name } } errors { code message field }
  }
}`;
const REVOKE = `mutation Revoke($groupId: ID!, $userId: ID!) {
  revokeMachineGroupAccess(groupId: $groupId, userId: $userId) { errors { code message field } }
}`;
const REGENERATE = `mutation Regenerate($id: ID!) {
  regenerateMachineGroupPassword(id: $id) { password errors { code message field } }
}`;

export function ManageAccess({ group, can, reload }) {
  const [done, setDone] = useState(null);
  return html`<section aria-labelledby="access-title" class="access">
    <h2 id="access-title">Manage access</h2>
    ${group.hasDeactivatedUsers &&
    html`<p class="notice" data-testid="deactivated-notice">
      This group is shared with deactivated users. Remove their access.
    </p>`}
    ${done && html`<p class="flash" role="status">${done}</p>`}
    <${AddPeople} group=${group} can=${can} onShared=${(message) => {
      setDone(message);
      reload();
    }} />
    <${DataTable}
      testid="access-list"
      caption=${`People with access to ${group.name}, owner first`}
      columns=${["Person", "Access", "Actions"]}
    >
        ${group.access.map(
          (grant) => html`<tr data-user=${grant.user.name}>
            <${Cell} label="Person">
              ${grant.user.name}
              ${grant.user.deactivated && html` <span class="badge badge-warn">Deactivated</span>`}
            <//>
            <${Cell} label="Access">${level(grant.access)}<//>
            <${Cell} label="Actions">
              ${grant.access !== "OWNER" &&
              can.revoke &&
              html`<${Revoke} group=${group} grant=${grant} onRevoked=${() => {
                setDone(`Removed ${grant.user.name}'s access.`);
                reload();
              }} />`}
            <//>
          </tr>`,
        )}
    <//>
  </section>`;
}

function AddPeople({ group, can, onShared }) {
  const [name, setName] = useState("");
  const [access, setAccess] = useState("USER");
  const { errors, busy, act } = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const wanted = name.trim();
    const shared = await act(async () => {
      const user = (await gql(USER_BY_NAME, { name: wanted })).userByName;
      if (!user) {
        return { errors: [{ code: "NOT_FOUND", field: "userId", message: `No user is named “${wanted}”.` }] };
      }
      return { ...(await mutate(SHARE, { groupId: group.id, userId: user.id, access })), user };
    });
    if (shared) {
      setName("");
      onShared(`Shared with ${shared.user.name} as ${level(access)}.`);
    }
  };
  const personErrors = errorsFor(errors, "userId");
  const rest = errorsFor(errors, null, ["userId"]);
  return html`<form class="add-people card" onSubmit=${submit} aria-labelledby="add-title">
    <h3 id="add-title">Add people</h3>
    <div class="row">
      <div>
        <label for="share-name">Person's user name</label>
        <input
          id="share-name"
          required
          autocomplete="off"
          value=${name}
          aria-invalid=${personErrors.length ? "true" : undefined}
          aria-describedby=${personErrors.length ? "share-name-error" : undefined}
          onInput=${(event) => setName(event.currentTarget.value)}
        />
      </div>
      <div>
        <label for="share-level">Access</label>
        <select id="share-level" value=${access} onChange=${(event) => setAccess(event.currentTarget.value)}>
          <option value="USER">User: runs desktop flows</option>
          ${can.grantCoOwner &&
          html`<option value="CO_OWNER">Co-owner: also shares, edits, adds machines, deletes</option>`}
        </select>
      </div>
      <button type="submit" class="primary" disabled=${busy}>Share</button>
    </div>
    <${FieldErrors} id="share-name-error" errors=${personErrors} />
    <${FieldErrors} id="share-error" errors=${rest} />
  </form>`;
}

function Revoke({ group, grant, onRevoked }) {
  const { errors, busy, act } = useAction();
  const errorId = `revoke-error-${grant.user.id}`;
  const revoke = async () => {
    if (await act(() => mutate(REVOKE, { groupId: group.id, userId: grant.user.id }))) onRevoked();
  };
  return html`<button
      type="button"
      disabled=${busy}
      aria-describedby=${errors.length ? errorId : undefined}
      onClick=${revoke}
    >
      Remove access<span class="visually-hidden"> of ${grant.user.name}</span>
    </button>
    <${FieldErrors} id=${errorId} errors=${errors} />`;
}

export function RegeneratePassword({ group }) {
  const [step, setStep] = useState("idle"); // idle, confirm, shown
  const [password, setPassword] = useState(null);
  const [copied, setCopied] = useState(null);
  const { errors, act } = useAction();
  const regenerate = async () => {
    const payload = await act(() => mutate(REGENERATE, { id: group.id }));
    setPassword(payload ? payload.password : null);
    setCopied(null);
    setStep(payload ? "shown" : "idle");
  };
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(password);
      setCopied("Copied to the clipboard.");
    } catch {
      setCopied("The browser did not allow copying: select the password and copy it by hand.");
    }
  };
  const forget = () => {
    setPassword(null);
    setStep("idle");
  };
  return html`<div class="card" data-testid="group-password">
    <h3>Group password</h3>
    <p class="hint">
      Adding a machine to the group needs this password.
      ${group.hasPassword ? " It is set." : " It is not set yet: the first machine added sets it."}
    </p>
    ${step === "idle" &&
    html`<button
      type="button"
      aria-describedby=${errors.length ? "regenerate-error" : undefined}
      onClick=${() => setStep("confirm")}
    >Re-generate password</button>`}
    ${step === "confirm" &&
    html`<p>The current password stops working at once. Machines already in the group stay.</p>
      <div class="actions">
        <button type="button" class="primary" onClick=${regenerate}>Re-generate now</button>
        <button type="button" onClick=${() => setStep("idle")}>Cancel</button>
      </div>`}
    ${step === "shown" &&
    html`<div class="secret">
      <p class="warning" role="alert">
        Copy this password now and keep it safe: it is shown only once and cannot be
        recovered.
      </p>
      <label id="new-password-label" for="new-password">New group password</label>
      <div class="row">
        <input id="new-password" readonly value=${password} class="mono" />
        <button type="button" onClick=${copy}>Copy</button>
        <button type="button" onClick=${forget}>Done</button>
      </div>
      ${copied && html`<p role="status">${copied}</p>`}
    </div>`}
    <${FieldErrors} id="regenerate-error" errors=${errors} />
  </div>`;
}
