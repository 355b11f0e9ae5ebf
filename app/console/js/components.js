// Small pieces every page uses: loading and empty states, errors next to their control,
// pagination, live-connection state, and hooks to load data and tick a clock.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { html } from "./html.js";
import { liveState, onLiveState } from "./live.js";
import { word } from "./format.js";

/** Load with `load()` (a promise) when `deps` change; `reload()` loads again in place. */
export function useLoad(load, deps) {
  const [result, setResult] = useState({ loading: true, data: null, error: null });
  const generation = useRef(0);
  const run = useCallback(async (quiet) => {
    const mine = ++generation.current;
    if (!quiet) setResult((before) => ({ ...before, loading: true, error: null }));
    try {
      const data = await load();
      if (mine === generation.current) setResult({ loading: false, data, error: null });
    } catch (error) {
      if (mine === generation.current) {
        setResult((before) => ({ ...before, loading: false, error: error.message }));
      }
    }
  }, deps);
  useEffect(() => {
    run(false);
  }, [run]);
  return { ...result, reload: () => run(true) };
}

/** The current time, moving every `interval` milliseconds (for elapsed times). */
export function useNow(interval = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), interval);
    return () => clearInterval(timer);
  }, [interval]);
  return now;
}

export function useLiveState() {
  const [state, setState] = useState(liveState());
  useEffect(() => onLiveState(setState), []);
  return state;
}

const LIVE_WORDS = {
  idle: ["Live updates: off", "idle"],
  connecting: ["Live updates: connecting…", "busy"],
  live: ["Live updates: on", "ok"],
  reconnecting: ["Live updates: reconnecting…", "warn"],
  refused: ["Live updates: refused", "bad"],
};

export function LiveBadge() {
  const state = useLiveState();
  const [text, tone] = LIVE_WORDS[state];
  return html`<p class=${`live live-${tone}`} role="status" data-live=${state}>${text}</p>`;
}

export function Loading({ what = "Loading…" }) {
  return html`<p class="loading" role="status">${what}</p>`;
}

export function Empty({ children }) {
  return html`<div class="empty">${children}</div>`;
}

/** A whole-view error (a failed query), in the API's words. */
export function Problem({ message, retry }) {
  return html`<div class="problem" role="alert">
    <p>${message}</p>
    ${retry && html`<button type="button" onClick=${retry}>Try again</button>`}
  </div>`;
}

/** Errors of a mutation's payload that belong to `field` (or, with no field, the rest). */
export function errorsFor(errors, field, fields = []) {
  return (errors || []).filter((error) =>
    field ? error.field === field : !error.field || !fields.includes(error.field),
  );
}

/** The API's messages, next to the control that caused them (give the control
 * aria-describedby=id and aria-invalid). */
export function FieldErrors({ id, errors }) {
  if (!errors || !errors.length) return null;
  return html`<p class="field-error" id=${id} role="alert">
    ${errors.map((error) => html`<span data-code=${error.code}>${error.message}</span>`)}
  </p>`;
}

export function StatusBadge({ value }) {
  return html`<span class=${`badge badge-${value.toLowerCase()}`}>${word(value)}</span>`;
}

/** A table cell that names its column on narrow screens (see console.css). */
export function Cell({ label, children, class: className }) {
  return html`<td data-label=${label} class=${className}>${children}</td>`;
}

/** A list's total as shown: past the count the server reads (1,000), "1000+". */
export function shownTotal(page) {
  return page.totalCountIsExact === false ? `${page.totalCount}+` : page.totalCount;
}

/** Previous / next page for cursor pagination. */
export function Pager({ label, from, to, total, hasPrevious, hasNext, onPrevious, onNext }) {
  if (!total) return null;
  return html`<nav class="pager" aria-label=${label}>
    <p>${from}–${to} of ${total}</p>
    <button type="button" disabled=${!hasPrevious} onClick=${onPrevious}>Previous page</button>
    <button type="button" disabled=${!hasNext} onClick=${onNext}>Next page</button>
  </nav>`;
}

/** Cursor pagination: the cursors of the pages before this one. */
export function useCursors() {
  const [stack, setStack] = useState([null]);
  return {
    after: stack[stack.length - 1],
    index: stack.length - 1,
    next: (cursor) => setStack((before) => [...before, cursor]),
    previous: () => setStack((before) => (before.length > 1 ? before.slice(0, -1) : before)),
    reset: () => setStack([null]),
  };
}

/** The page's heading, focused when the page opens so screen readers and keyboards start there. */
export function PageTitle({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}

/** A cursor-paginated list: `fetch(first, after)` resolves to a connection
 * ({totalCount, totalCountIsExact, pageInfo, edges}); `deps` (a filter) start again from
 * the first page. */
export function usePages(fetch, deps, size = 25) {
  const cursors = useCursors();
  const loaded = useLoad(() => fetch(size, cursors.after), [cursors.after, ...deps]);
  const page = loaded.data;
  const rows = page ? page.edges.map((edge) => edge.node) : [];
  const pager = page && {
    from: cursors.index * size + 1,
    to: cursors.index * size + rows.length,
    total: shownTotal(page),
    hasPrevious: cursors.index > 0,
    hasNext: page.pageInfo.hasNextPage,
    onPrevious: cursors.previous,
    onNext: () => cursors.next(page.pageInfo.endCursor),
  };
  return { ...loaded, page, rows, pager, firstPage: cursors.reset };
}

/** A table of records: column headings, then the rows given as children. */
export function DataTable({ columns, caption, testid, class: className, children }) {
  return html`<div class="table-wrap">
    <table data-testid=${testid} class=${className}>
      ${caption && html`<caption class="visually-hidden">${caption}</caption>`}
      <thead>
        <tr>
          ${columns.map((column) => {
            const [label, cls] = Array.isArray(column) ? column : [column];
            return html`<th scope="col" class=${cls}>${label}</th>`;
          })}
        </tr>
      </thead>
      <tbody>${children}</tbody>
    </table>
  </div>`;
}

/** Run one mutation for a control: its payload's errors (the API's words) are kept to
 * show next to that control; resolves to the payload on success, else null. */
export function useAction() {
  const [errors, setErrors] = useState([]);
  const [busy, setBusy] = useState(false);
  const act = async (run) => {
    setBusy(true);
    setErrors([]);
    try {
      const payload = await run();
      if (payload.errors?.length) {
        setErrors(payload.errors);
        return null;
      }
      return payload;
    } catch (failure) {
      setErrors([{ code: "REQUEST", message: failure.message }]);
      return null;
    } finally {
      setBusy(false);
    }
  };
  return { errors, setErrors, busy, act };
}
