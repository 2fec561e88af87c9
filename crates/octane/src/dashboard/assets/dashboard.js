// Octane dashboard: asks before an action, and refreshes the live part of
// a page (#live) every two seconds while it is open and its workflow runs.
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

async function refresh() {
  if (document.body.dataset.live !== "1" || document.hidden) {
    return;
  }
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  try {
    const response = await fetch(window.location.href, { cache: "no-store" });
    if (!response.ok) {
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("live");
    if (fresh) {
      live.replaceWith(fresh);
      document.body.dataset.live = page.body.dataset.live;
    }
  } catch (_) {
    // The server is away for a moment: try again at the next tick.
  }
}

window.setInterval(refresh, 2000);
