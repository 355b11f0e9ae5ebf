// Words and times as people read them.

const LEVELS = { OWNER: "Owner", CO_OWNER: "Co-owner", USER: "User" };
const ROLES = {
  SYSTEM_ADMINISTRATOR: "System administrator",
  ENVIRONMENT_MAKER: "Environment maker",
  DESKTOP_FLOWS_MACHINE_OWNER: "Desktop flows machine owner",
  DESKTOP_FLOWS_MACHINE_USER: "Desktop flows machine user",
  DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE: "Desktop flows machine user can share",
};
const WORDS = {
  QUEUED: "Queued",
  RUNNING: "Running",
  SUCCEEDED: "Succeeded",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
  HIGH: "High",
  NORMAL: "Normal",
  LOW: "Low",
  ONLINE: "Online",
  OFFLINE: "Offline",
  MAINTENANCE: "Maintenance",
  BUSY: "Busy",
};

export const level = (value) => (value ? LEVELS[value] || value : "Administrator (no grant)");
export const role = (value) => ROLES[value] || value;
export const word = (value) => WORDS[value] || value;

/** A machine's status as the console shows it: busy while it runs a run. */
export function machineStatus(machine) {
  if (machine.status === "ONLINE" && machine.currentRun) return "BUSY";
  return machine.status;
}

export function dateTime(value) {
  if (!value) return "—";
  return new Date(value).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function duration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  if (minutes) return `${minutes} min ${String(rest).padStart(2, "0")} s`;
  return `${rest} s`;
}

export function elapsedSince(value, now) {
  return value ? duration((now - new Date(value).getTime()) / 1000) : "—";
}

/** "in 3 min" / "now" / "unknown" for an estimated start. */
export function estimate(value, now) {
  if (!value) return "Unknown yet";
  const seconds = (new Date(value).getTime() - now) / 1000;
  return seconds <= 1 ? "Now" : `In ${duration(seconds)}`;
}
