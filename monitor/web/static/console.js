// New alerts without a manual reload: the first page of the alert list asks every few
// seconds for the newest alert id and, when it grew, reloads the list from the server
// (which renders and escapes it). No other script runs on the console.
"use strict";
(function () {
  const list = document.getElementById("alerts");
  if (!list || list.dataset.live !== "yes") return;
  let latest = Number(list.dataset.latest);
  async function check() {
    try {
      const answer = await fetch(list.dataset.latestUrl, { cache: "no-store" });
      const newest = (await answer.json()).latest;
      if (newest > latest) {
        const page = await fetch(window.location.href, { cache: "no-store" });
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        const fresh = doc.getElementById("alerts");
        if (fresh) {
          list.replaceChildren(...fresh.childNodes);
          latest = Number(fresh.dataset.latest);
        }
      }
    } catch (e) {
      // The daemon is restarting or gone: try again at the next tick.
    }
  }
  setInterval(check, 3000);
})();
