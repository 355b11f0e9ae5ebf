// Hash routes (#/groups, #/groups/ID, ...): the page is one file, and the token never
// enters a URL.
import { useEffect, useState } from "preact/hooks";

export function currentRoute() {
  const path = window.location.hash.replace(/^#/, "") || "/groups";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { path, parts };
}

export function useRoute() {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}

export function go(path) {
  window.location.hash = `#${path}`;
}

export const groupHref = (id) => `#/groups/${encodeURIComponent(id)}`;

// A message for the next page (e.g. "Deleted group X" after a deletion).
let flash = null;

export function setFlash(message) {
  flash = message;
}

export function takeFlash() {
  const message = flash;
  flash = null;
  return message;
}
