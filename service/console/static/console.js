// The console's progressive enhancement (no framework, no build step): review-queue
// shortcuts, decisions posted in the background with the next proposal swapped in, and
// progress for slow forms. Every page works without it.
"use strict";
(function () {
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }

  function queue() { return document.querySelector("[data-queue]"); }

  function swap(html) {
    const box = queue();
    box.innerHTML = html;
    const heading = box.querySelector("#proposal-title") || box.querySelector("[data-empty]");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
  }

  async function post(form) {
    const body = new URLSearchParams(new FormData(form));
    const response = await fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-Console-Fragment": "1" },
    });
    if (response.status === 401) { window.location.assign("/console/sign-in?why=" + encodeURIComponent("Your session has ended: sign in again.")); return; }
    swap(await response.text());
    const invalid = queue().querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
  }

  async function next(link) {
    const response = await fetch(link.href, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" });
    swap(await response.text());
    history.replaceState(null, "", link.href);
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.matches("[data-fragment]") && queue()) {
      event.preventDefault();
      post(form);
      return;
    }
    if (form.matches("[data-progress]")) {
      // A slow operation (the loop run): say what is happening and for how long.
      const button = form.querySelector("button");
      const status = form.querySelector(".progress");
      const started = Date.now();
      const label = form.dataset.progress;
      const tick = function () { status.textContent = label + "… " + Math.round((Date.now() - started) / 1000) + " s"; };
      tick();
      setInterval(tick, 1000);
      setTimeout(function () { button.disabled = true; button.setAttribute("aria-busy", "true"); }, 0);
    }
  });

  document.addEventListener("click", function (event) {
    const link = event.target.closest("[data-next]");
    if (link && queue()) { event.preventDefault(); next(link); }
  });

  document.addEventListener("keydown", function (event) {
    const box = queue();
    if (!box || event.altKey || event.isComposing) return;
    const el = document.activeElement;
    if (event.key === "Escape" && typing(el)) { el.blur(); box.querySelector("#proposal-title")?.focus(); return; }
    if (el && el.id === "edit-content" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      el.form.requestSubmit();
      return;
    }
    if (typing(el) || event.ctrlKey || event.metaKey) return;
    const approve = box.querySelector("[data-approve]");
    const reject = box.querySelector("[data-reject]");
    if (event.key === "a" && approve) { event.preventDefault(); approve.requestSubmit(); }
    else if (event.key === "e") {
      const area = box.querySelector("#edit-content");
      if (area) { event.preventDefault(); area.focus(); area.select(); }
    } else if (event.key === "r" && reject) { event.preventDefault(); reject.querySelector("input[name=reason]").focus(); }
    else if (event.key === "n" || event.key === "j") {
      const link = box.querySelector("[data-next]");
      if (link) { event.preventDefault(); next(link); }
    }
  });
})();
