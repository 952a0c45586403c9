// The dashboard's own script: served from /ui/static, so the CSP needs no inline code.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A one-time login link: post its nonce at once (a GET must not log anyone in).
  const auto = document.querySelector("form[data-autosubmit]");
  if (auto) auto.requestSubmit();

  // Compare: the button is usable once two runs are ticked.
  const compare = document.querySelector("form.compare-form");
  if (compare) {
    const button = compare.querySelector("button[type=submit]");
    const update = () => {
      const ticked = compare.querySelectorAll("input[name=run]:checked").length;
      button.disabled = ticked < 2;
      button.textContent = ticked < 2 ? "Tick two or more runs to compare" : `Compare ${ticked} runs`;
    };
    compare.addEventListener("change", update);
    update();
  }

  // Lineage: a wide graph scrolls so the node asked about is in view.
  const root = document.querySelector(".graph.lineage g.lnode.root rect");
  if (root) {
    const box = root.closest(".graph");
    const x = Number(root.getAttribute("x"));
    box.scrollLeft = Math.max(0, x - box.clientWidth / 2 + Number(root.getAttribute("width")) / 2);
  }

  // A live log tail: server-sent events; each line is added as text, never as HTML.
  const tail = document.querySelector("[data-log-source]");
  if (tail) {
    const output = tail.querySelector(".lines");
    const status = tail.querySelector(".tail-status");
    const source = new EventSource(tail.dataset.logSource);
    source.onopen = () => { status.textContent = "following"; };
    source.onerror = () => { status.textContent = "reconnecting…"; };
    source.onmessage = (event) => {
      const line = JSON.parse(event.data);
      const row = document.createElement("div");
      row.className = "line " + line.stream;
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = `[${line.index}/${line.stream}] `;
      row.append(where, document.createTextNode(line.text));
      const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
      output.append(row);
      while (output.childElementCount > 2000) output.firstElementChild.remove();
      if (atEnd) output.scrollTop = output.scrollHeight;
    };
  }
});
