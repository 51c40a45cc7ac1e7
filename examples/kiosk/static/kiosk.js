// edgerec kiosk: forms become fetches that swap in the #kiosk fragment the server renders.
// Without JavaScript the same forms post and redirect, so the page works either way.
(() => {
  "use strict";
  const FETCH_HEADER = "X-Kiosk-Fetch";
  let latest = 0;          // only the newest answer is applied (fast taps may overtake)
  let touched = false;     // the visitor did something since the last reset
  let idleTimer = null;
  const idleMs = Number(document.body.dataset.idleMs) || 90000;

  function notice(text, isError) {
    const el = document.getElementById("notice");
    if (el) { el.textContent = text; el.classList.toggle("error", !!isError); }
  }

  async function swap(url, init) {
    const mine = ++latest;
    let res;
    try {
      res = await fetch(url, { ...init, credentials: "same-origin", headers: { [FETCH_HEADER]: "1" } });
    } catch (err) {
      notice("The kiosk is not answering; please try again.", true);
      return;
    }
    const body = await res.text();
    if (mine !== latest) return;
    if (!res.ok) { notice(body || `Error ${res.status}`, true); return; }
    document.getElementById("kiosk").outerHTML = body;
  }

  function post(form, extra) {
    const data = new URLSearchParams(new FormData(form));
    for (const [k, v] of Object.entries(extra || {})) data.set(k, v);
    return swap(form.getAttribute("action"), { method: "POST", body: data });
  }

  function filterQuery() {
    const form = document.getElementById("filters");
    const params = new URLSearchParams();
    if (!form) return params;
    for (const [k, v] of new FormData(form)) if (v) params.set(k, v);
    return params;
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-swap]");
    if (!form) return;
    event.preventDefault();
    const resetting = form.getAttribute("action") === "/reset";
    touched = !resetting;
    if (resetting) history.replaceState(null, "", "/");
    post(form);
  });

  document.addEventListener("change", (event) => {
    if (!event.target.closest("#filters")) return;
    touched = true;
    const query = filterQuery().toString();
    history.replaceState(null, "", query ? `/?${query}` : "/");
    swap(`/grid${query ? "?" + query : ""}`, { method: "GET" });
  });

  // Inactivity: the next visitor should find the cold-start list, not the last one's picks.
  function armIdle() {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (!touched) return armIdle();
      touched = false;
      history.replaceState(null, "", "/");
      const form = document.querySelector('form[action="/reset"]');
      if (form) post(form, { reason: "idle" });
      armIdle();
    }, idleMs);
  }
  for (const type of ["pointerdown", "keydown", "touchstart"]) {
    document.addEventListener(type, armIdle, { passive: true });
  }
  armIdle();
})();
