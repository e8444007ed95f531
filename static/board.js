// The kanban board: drag cards between and within columns, or onto the won/lost zones.
// Each drop is sent to the server, which checks it; the columns' totals come back in the answer.
// A refused drop puts the card back where it was and says why.
(function () {
  "use strict";
  const board = document.querySelector("[data-board]");
  if (!board || typeof Sortable === "undefined") return;
  const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
  const csrf = headers["X-CSRF-Token"] || "";
  const dialog = document.getElementById("loss-dialog");
  const toast = document.getElementById("toast");

  function say(message) {
    toast.textContent = message;
    toast.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { toast.hidden = true; }, 6000);
  }

  function putBack(evt) {
    const siblings = Array.from(evt.from.children).filter((c) => c !== evt.item);
    evt.from.insertBefore(evt.item, siblings[evt.oldIndex] || null);
  }

  function askLossReason() {
    return new Promise((resolve) => {
      const select = dialog.querySelector("select");
      select.value = "";
      const cancel = dialog.querySelector("[data-cancel]");
      const done = (value) => {
        cancel.onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(value);
      };
      cancel.onclick = () => done(null);
      dialog.onclose = () => done(dialog.returnValue === "ok" && select.value ? select.value : null);
      dialog.showModal();
    });
  }

  async function drop(evt) {
    const to = evt.to;
    if (evt.from === to && evt.oldIndex === evt.newIndex) return;
    const card = evt.item;
    let prev = card.previousElementSibling;
    while (prev && !prev.dataset.deal) prev = prev.previousElementSibling;
    const body = new URLSearchParams({
      stage_id: to.dataset.stage,
      after: prev ? prev.dataset.deal : "",
      loss_reason_id: "",
      filter: board.dataset.filter || "",
    });
    if (to.dataset.kind === "lost") {
      const reason = await askLossReason();
      if (!reason) { putBack(evt); return; }
      body.set("loss_reason_id", reason);
    }
    card.classList.add("saving");
    let answer = {};
    let ok = false;
    try {
      const res = await fetch("/deals/" + card.dataset.deal + "/move", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
        body,
      });
      answer = await res.json().catch(() => ({}));
      ok = res.ok;
    } catch (e) {
      answer = { message: String(e) };
    }
    card.classList.remove("saving");
    if (!ok) {
      putBack(evt);
      say(answer.message || "Error");
      return;
    }
    for (const t of answer.totals || []) {
      const el = document.getElementById("totals-" + t.stage_id);
      if (el) el.textContent = t.text;
    }
    // A closed deal leaves the board.
    if (to.dataset.kind === "won" || to.dataset.kind === "lost") card.remove();
  }

  document.querySelectorAll("[data-sortable]").forEach((el) => {
    Sortable.create(el, {
      group: "board",
      draggable: ".card",
      animation: 120,
      ghostClass: "ghost",
      // Pointer events rather than native HTML drag and drop: the same feel in every browser,
      // touch included, and a card that follows the pointer.
      forceFallback: true,
      fallbackTolerance: 3,
      onEnd: drop,
    });
  });
})();
