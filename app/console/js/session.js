// The signed-in token: kept in this tab's sessionStorage, never in a URL.
export const TOKEN_KEY = "machine-groups.token";

export function storedToken() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  window.sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  window.sessionStorage.removeItem(TOKEN_KEY);
}
